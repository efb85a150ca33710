use super::sealed::Sealed;
use super::*;
extern crate std;

fn rows(seed: u32, len: usize) -> [[f32; 300]; 8] {
    let mut out = [[0.0f32; 300]; 8];
    let mut s = seed;
    for r in out.iter_mut() {
        for x in r.iter_mut().take(len) {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *x = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        }
    }
    out
}

/// Every tile shape with its row sets: rows 0..4 of `m` against
/// themselves (diagonal) or against rows 4..8.
fn tile_cases(m: &[[f32; 300]; 8]) -> impl Iterator<Item = (Tile, [&[f32]; 4], [&[f32]; 4])> {
    let a = [&m[0][..], &m[1][..], &m[2][..], &m[3][..]];
    let b = [&m[4][..], &m[5][..], &m[6][..], &m[7][..]];
    (1..=4usize)
        .flat_map(|rows| (1..=4usize).map(move |cols| (rows, cols)))
        .flat_map(|(rows, cols)| [false, true].map(|diagonal| (rows, cols, diagonal)))
        .filter(|&(rows, cols, diagonal)| !diagonal || rows == cols)
        .map(move |(rows, cols, diagonal)| {
            let shape = Tile {
                rows,
                cols,
                diagonal,
            };
            (shape, a, if diagonal { a } else { b })
        })
}

#[test]
fn simd_scalar_and_exact_tiles_agree() {
    for len in [0usize, 1, 7, 8, 9, 63, 255, 256] {
        let m = rows(len as u32 + 1, len);
        let a = [&m[0][..], &m[1][..], &m[2][..], &m[3][..]];
        let b = [&m[4][..], &m[5][..], &m[6][..], &m[3][..]];
        let (mut x, mut y, mut z) = ([[0.0; 4]; 4], [[0.0; 4]; 4], [[0.0; 4]; 4]);
        wide::gram_tile(a, b, Tile::FULL, len, &mut x);
        scalar::gram_tile_f32(a, b, Tile::FULL, len, &mut y);
        gram_tile_exact(a, b, len, &mut z);
        for r in 0..4 {
            for c in 0..4 {
                assert!((x[r][c] - z[r][c]).abs() <= 1e-5, "simd {len} {r} {c}");
                assert!((y[r][c] - z[r][c]).abs() <= 1e-5, "scalar {len} {r} {c}");
            }
        }
    }
}

/// Every tile shape computes exactly its pairs, the same in both twins,
/// and leaves the other entries alone.
#[test]
fn tile_shapes_compute_exactly_their_pairs() {
    let m = rows(17, 300);
    for len in [1usize, 8, 13, 256] {
        for (shape, a, b) in tile_cases(&m) {
            let (mut x, mut y, mut z) = ([[7.0; 4]; 4], [[7.0; 4]; 4], [[0.0; 4]; 4]);
            wide::gram_tile(a, b, shape, len, &mut x);
            scalar::gram_tile_f32(a, b, shape, len, &mut y);
            gram_tile_exact(a, b, len, &mut z);
            for r in 0..4 {
                for c in 0..4 {
                    if shape.has(r, c) {
                        assert!((x[r][c] - 7.0 - z[r][c]).abs() <= 1e-5, "{shape:?} {r} {c}");
                        assert!((y[r][c] - 7.0 - z[r][c]).abs() <= 1e-5, "{shape:?} {r} {c}");
                    } else {
                        assert_eq!((x[r][c], y[r][c]), (7.0, 7.0), "{shape:?} {r} {c}");
                    }
                }
            }
        }
    }
}

/// The diagonal tile tells, in both twins, whether its rows fit the
/// `f32` lanes: ordinary and zero rows do, rows with a huge, NaN or
/// infinite value or only tiny values do not.
#[test]
fn diagonal_tiles_check_the_row_range() {
    let base = rows(9, 300);
    let cases: [(f32, f32, bool); 8] = [
        (0.0, 0.0, true),
        (1.0, 0.5, true),
        (1e30, 1.0, false),
        (f32::NAN, 1.0, false),
        (f32::INFINITY, 1.0, false),
        (-f32::INFINITY, 1.0, false),
        (1e-30, 0.0, false),
        (1e-10, 0.0, true),
    ];
    for len in [8usize, 16, 17, 256] {
        for &(special, scale, fits) in &cases {
            for pos in [0usize, 7, len - 1] {
                if pos >= len - len % 8 && special == 1e-10 {
                    // A small value alone in the tail columns (the
                    // SIMD lanes all zero) takes the exact kernel in
                    // the SIMD form: either choice is right.
                    continue;
                }
                let mut r = [0.0f32; 300];
                for (x, &y) in r.iter_mut().zip(&base[0]).take(len) {
                    *x = y * scale;
                }
                r[pos] = special;
                let a = [&r[..], &base[1][..], &base[2][..], &base[3][..]];
                let shape = Tile {
                    rows: 4,
                    cols: 4,
                    diagonal: true,
                };
                let mut out = [[0.0; 4]; 4];
                let got = wide::gram_tile(a, a, shape, len, &mut out);
                assert_eq!(got, fits, "simd len {len} {special} at {pos}");
                let got = scalar::gram_tile_f32(a, a, shape, len, &mut out);
                assert_eq!(got, fits, "scalar len {len} {special} at {pos}");
            }
        }
    }
}

/// The kernels `k` give bitwise the compile-time backend's Gram tiles.
fn tiles_are_bitwise_the_portable_ones(k: Kernels) {
    let m = rows(23, 300);
    for len in [1usize, 8, 13, 100, 256] {
        for (shape, a, b) in tile_cases(&m) {
            let (mut x, mut y) = ([[0.0; 4]; 4], [[0.0; 4]; 4]);
            let ok_x = k.gram_tile(a, b, shape, len, &mut x);
            let ok_y = wide::gram_tile(a, b, shape, len, &mut y);
            assert_eq!(ok_x, ok_y);
            assert_eq!(
                x.map(|r| r.map(f64::to_bits)),
                y.map(|r| r.map(f64::to_bits)),
                "{k:?} {shape:?} {len}"
            );
        }
    }
}

/// One `gram_run` over many blocks is bitwise one tile call per block
/// (the exact kernel where the fast one may not run or a diagonal
/// block's rows do not fit), added in block order, on every run-time
/// level and in the scalar twin; the merged apply kernel is bitwise its
/// scalar twin, one call over many rows bitwise the calls of four rows
/// through the `f64` sums, and free of the overflow of the `f32` terms. On
/// the kernels `k` (and the portable and scalar ones).
fn runs_are_bitwise_one_call_per_block(k: Kernels) {
    let len = 5 * BLOCK + 13;
    let mut m = [[0.0f32; 5 * BLOCK + 13]; 8];
    let mut s = 7u32;
    for r in m.iter_mut() {
        for x in r.iter_mut() {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *x = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        }
    }
    // Block 1 of row 1 out of range, block 3 of row 6 tiny.
    m[1][BLOCK + 5] = 1e30;
    for x in &mut m[6][3 * BLOCK..4 * BLOCK] {
        *x *= 1e-33;
    }
    type Tf<'f> = &'f dyn Fn([&[f32]; 4], [&[f32]; 4], Tile, usize, &mut [[f64; 4]; 4]) -> bool;
    type Rf<'f> = &'f dyn Fn([&[f32]; 4], [&[f32]; 4], Tile, usize, u64, &mut [[f64; 4]; 4]) -> u64;
    let pairs: [(Tf, Rf); 3] = [
        (&wide::gram_tile, &wide::gram_run),
        (&scalar::gram_tile_f32, &|a, b, sh, l, f, o| {
            run_blocks(a, b, sh, l, f, o, scalar::gram_tile_f32)
        }),
        (
            &|a, b, sh, l, o| k.gram_tile(a, b, sh, l, o),
            &|a, b, sh, l, f, o| k.gram_run(a, b, sh, l, f, o),
        ),
    ];
    for &(tile_fn, run_fn) in &pairs {
        for (ra, rb, diagonal) in [(0, 0, true), (4, 4, true), (0, 4, false)] {
            for (rows_, cols) in [(1, 1), (2, 2), (3, 4), (4, 4)] {
                if diagonal && rows_ != cols {
                    continue;
                }
                for fast in [u64::MAX, 0b10110, 0] {
                    let a = [0, 1, 2, 3].map(|r| &m[ra + r][..]);
                    let b = [0, 1, 2, 3].map(|r| &m[rb + r][..]);
                    let shape = Tile {
                        rows: rows_,
                        cols,
                        diagonal,
                    };
                    let mut want = [[0.5; 4]; 4];
                    let mut want_fits = 0u64;
                    for (k, k0) in (0..len).step_by(BLOCK).enumerate() {
                        let k1 = len.min(k0 + BLOCK);
                        let (ab, bb) = (a.map(|r| &r[k0..k1]), b.map(|r| &r[k0..k1]));
                        let mut o = [[0.0; 4]; 4];
                        if fast >> k & 1 == 1 && tile_fn(ab, bb, shape, k1 - k0, &mut o) {
                            want_fits |= 1 << k;
                        } else {
                            o = [[0.0; 4]; 4];
                            gram_tile_exact(ab, bb, k1 - k0, &mut o);
                        }
                        for r in 0..4 {
                            for c in 0..4 {
                                if shape.has(r, c) {
                                    want[r][c] += o[r][c];
                                }
                            }
                        }
                    }
                    let mut got = [[0.5; 4]; 4];
                    let fits = run_fn(a, b, shape, len, fast, &mut got);
                    assert_eq!(fits, want_fits, "{shape:?} {fast:b}");
                    assert_eq!(
                        got.map(|r| r.map(f64::to_bits)),
                        want.map(|r| r.map(f64::to_bits)),
                        "{shape:?} {fast:b}"
                    );
                }
            }
        }
    }
    type Run<'f> = &'f dyn Fn(&mut [f32], &mut [f64]);
    let coef = [0.3, -1.7, 2.5e-3, 9.0];
    for n in 1..=4 {
        for first in [true, false] {
            for last in [None, Some(0.25), Some(1.0)] {
                for l in [0usize, 7, 8, 300, len] {
                    let rows = [0, 1, 2, 3].map(|r| &m[r + 2][..l]);
                    let mut acc0 = [0.0f64; 5 * BLOCK + 13];
                    for (c, a) in acc0.iter_mut().enumerate() {
                        *a = f64::from(m[1][c]) * 3.0;
                    }
                    let (mut want, mut want_acc) = (m[0], acc0);
                    scalar::merge_rows(&mut want[..l], &mut want_acc, rows, coef, n, first, last);
                    let runs: [Run; 3] = [
                        &|o, a| wide::merge(o, a, rows, coef, n, first, last),
                        &|o, a| k.merge(o, a, rows, coef, n, first, last),
                        &|o, a| f32::merge_rows(k, o, a, rows, coef, n, first, last),
                    ];
                    for run in runs {
                        let (mut got, mut got_acc) = (m[0], acc0);
                        run(&mut got[..l], &mut got_acc);
                        assert_eq!(
                            got.map(f32::to_bits),
                            want.map(f32::to_bits),
                            "{k:?} {n} {l}"
                        );
                        assert_eq!(
                            got_acc.map(f64::to_bits),
                            want_acc.map(f64::to_bits),
                            "{k:?} {n} {l}"
                        );
                    }
                    // The scalar twin is the definition, column by column.
                    for c in 0..l {
                        let mut s = if first { 0.0 } else { acc0[c] };
                        for r in 0..n {
                            s += f64::from(rows[r][c]) * coef[r];
                        }
                        match last {
                            Some(w) => assert_eq!(want[c].to_bits(), ((s * w) as f32).to_bits()),
                            None => assert_eq!(want_acc[c].to_bits(), s.to_bits()),
                        }
                    }
                }
            }
        }
    }
    // Terms that overflow f32 but whose sum does not.
    let (x, y) = ([3e38f32; 9], [-3e38f32; 9]);
    let mut out = [1.0f32; 9];
    k.merge(
        &mut out,
        &mut [],
        [&x, &y, &x, &x],
        [2.0, 2.0, 0.0, 0.0],
        2,
        true,
        Some(1.0),
    );
    assert_eq!(out, [0.0; 9], "{k:?}");
}

/// The checks of one instruction set: bitwise the portable tiles, and one
/// run bitwise one call per block. A CPU without `isa` runs nothing here,
/// and says so; [`expected_instruction_sets_were_detected`] turns that into
/// a failure where the run expects the instruction set.
/// The projected apply's row combination on `k` against the plain loop
/// (from zero, `acc += c_j * row_j` for each `j` with `c_j != 0`, in
/// order), bitwise: for every width up to two register runs and past, with
/// zero coefficients over NaN rows (skipped, so no NaN comes out), a -0.0
/// start (0.0 + -0.0 is +0.0 in both) and mixed magnitudes.
fn combine_is_bitwise_the_row_loop(k: Kernels) {
    const S: usize = 80;
    let m = rows(99, 300);
    let mut flat = [0.0f64; 6 * S];
    for (j, r) in flat.chunks_mut(S).enumerate() {
        for (c, x) in r.iter_mut().enumerate() {
            *x = f64::from(m[j][c]) * [1.0, 1e-30, 1e30, -3.0, 1.0, 7.5][j];
        }
    }
    flat[4 * S..5 * S].fill(f64::NAN);
    flat[5 * S + 3] = -0.0;
    let coef = [0.25, -1.5, 1e-20, 3.0, 0.0, -0.0];
    for len in [0usize, 1, 7, 15, 16, 17, 31, 32, 33, 64, 65, 80] {
        for t in 1..=6 {
            let mut want = [0.0f64; S];
            for (j, &cj) in coef[..t].iter().enumerate() {
                if cj != 0.0 {
                    for (w, &v) in want[..len].iter_mut().zip(&flat[j * S..]) {
                        *w += cj * v;
                    }
                }
            }
            let mut got = [7.0f64; S];
            k.combine(&flat, S, &coef[..t], &mut got[..len]);
            for c in 0..len {
                assert_eq!(got[c].to_bits(), want[c].to_bits(), "{len} {t} {c}");
            }
            assert!(got[len..].iter().all(|&x| x == 7.0));
        }
    }
}

/// The projected apply's conversions on `k` against `f64::from` and
/// `as f32`, bitwise, over every length up to three vectors and past:
/// infinities, -0.0, subnormals, `f64` values beyond the `f32` range and
/// halfway cases (ties to even); a NaN gives a NaN (its sign and payload
/// are not specified: Miri picks them at random).
fn conversions_are_bitwise_as_casts(k: Kernels) {
    let same32 = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    let same64 = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    let wide: [f64; 12] = [
        f64::NAN,
        f64::INFINITY,
        -0.0,
        1e-45,
        -7e-46,
        1e300,
        -3.5e38,
        1.0 + f64::from(f32::EPSILON) / 2.0,
        1.0 + f64::from(f32::EPSILON) * 1.5,
        0.1,
        -2.5e-40,
        123_456_789.123,
    ];
    let narrow = rows(7, 300)[0];
    for len in [0usize, 1, 3, 4, 7, 8, 9, 16, 31, 32, 33, 40] {
        let src: [f64; 40] = core::array::from_fn(|i| wide[i % 12] * (1.0 + i as f64 * 1e-3));
        let mut got = [9.0f32; 40];
        k.narrow(&src[..len], &mut got[..len]);
        for c in 0..len {
            assert!(same32(got[c], src[c] as f32), "narrow {len} {c}");
        }
        assert!(got[len..].iter().all(|&x| x == 9.0));
        let mut src32: [f32; 40] = core::array::from_fn(|i| narrow[i]);
        src32[1] = f32::NAN;
        src32[2] = -0.0;
        src32[3] = 1e-45;
        src32[5] = f32::NEG_INFINITY;
        let mut got = [9.0f64; 40];
        k.widen(&src32[..len], &mut got[..len]);
        for c in 0..len {
            assert!(same64(got[c], f64::from(src32[c])), "widen {len} {c}");
        }
        assert!(got[len..].iter().all(|&x| x == 9.0));
    }
}

fn at_isa(isa: Isa) {
    match Kernels::new(isa) {
        Some(k) => {
            tiles_are_bitwise_the_portable_ones(k);
            runs_are_bitwise_one_call_per_block(k);
            combine_is_bitwise_the_row_loop(k);
        }
        None => std::eprintln!("{isa:?} not detected on this CPU: its kernel checks did not run"),
    }
}

/// The conversions at every instruction set this CPU has (a test of its
/// own: quick, also under Miri).
#[test]
fn conversions_at_every_instruction_set() {
    for &isa in Isa::ALL {
        if let Some(k) = Kernels::new(isa) {
            conversions_are_bitwise_as_casts(k);
        }
    }
}

/// One test per instruction set of this build.
macro_rules! isa_tests {
    ($($name:ident => $isa:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            at_isa(Isa::$isa)
        }
    )*};
}

isa_tests!(kernels_portable => Portable);
#[cfg(all(feature = "std", target_arch = "x86_64"))]
isa_tests!(kernels_avx => Avx, kernels_avx512 => Avx512);

/// Fails when an instruction set named in `PCGRAD_EXPECT_ISA` (a comma
/// separated list of `portable`, `avx`, `avx512`; `scripts/test.sh` sets it
/// from `/proc/cpuinfo`) was not detected, so that the tests above did not
/// silently skip the kernels the run was meant to check.
#[test]
fn expected_instruction_sets_were_detected() {
    // The portable kernels always exist, and `new` agrees with `best`.
    assert_eq!(
        Kernels::new(Isa::Portable).map(Kernels::isa),
        Some(Isa::Portable)
    );
    for &isa in Isa::ALL {
        assert_eq!(
            Kernels::new(isa).is_some(),
            isa <= Kernels::best().isa(),
            "{isa:?}"
        );
    }
    let list = std::env::var("PCGRAD_EXPECT_ISA").unwrap_or_default();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let isa = Isa::ALL
            .iter()
            .find(|i| std::format!("{i:?}").eq_ignore_ascii_case(name));
        let isa = isa.unwrap_or_else(|| {
            panic!("PCGRAD_EXPECT_ISA: {name} is not an instruction set of this build")
        });
        assert!(
            Kernels::new(*isa).is_some(),
            "PCGRAD_EXPECT_ISA: {isa:?} expected but not detected"
        );
        assert!(Kernels::best().isa() >= *isa);
    }
}
