//! Success paths against the safe Rust API.

use super::*;

#[test]
fn status_str_describes_every_code() {
    let text = |code: i32| {
        let p = pcgrad_status_str(code);
        assert!(!p.is_null());
        // SAFETY: non-NULL and documented as a static NUL-terminated
        // string.
        unsafe { CStr::from_ptr(p) }.to_str().unwrap()
    };
    let known: Vec<&str> = ALL_CODES.iter().map(|&c| text(c as i32)).collect();
    for (i, a) in known.iter().enumerate() {
        assert!(!a.is_empty() && *a != "unknown status", "{a}");
        assert!(known[i + 1..].iter().all(|b| a != b), "duplicate {a}");
    }
    assert_eq!(known[0], "success");
    let errors = [
        Error::NullPointer,
        Error::NoTasks,
        Error::LengthMismatch,
        Error::Overflow,
        Error::WorkspaceTooSmall,
        Error::NonFinite,
        Error::Overlap,
        Error::InvalidEnum,
        Error::InvalidOrder,
        Error::InvalidRange,
        Error::Misaligned,
        Error::InvalidParameter,
        Error::NotPsd,
        Error::Unsupported,
    ];
    for (k, e) in errors.into_iter().enumerate() {
        let st = pcgrad_status::from(e);
        assert_eq!(st, ALL_CODES[k + 1]);
        assert_eq!(st as i32, e.code());
        assert_eq!(text(e.code()), e.as_str());
    }
    for code in [1, 2, -15, -100, i32::MIN, i32::MAX] {
        assert_eq!(text(code), "unknown status");
    }
}

#[test]
fn version_matches_cargo() {
    // SAFETY: documented as a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(pcgrad_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    let want = std::format!("{PCGRAD_VERSION_MAJOR}.{PCGRAD_VERSION_MINOR}.{PCGRAD_VERSION_PATCH}");
    assert_eq!(v.to_str().unwrap(), want);
}

#[test]
fn zeroed_config_is_the_default_and_valid() {
    // SAFETY: integers and raw pointers only: all-zero bits are valid.
    let zero: pcgrad_config = unsafe { core::mem::zeroed() };
    let d = default_config();
    assert_eq!(cfg_bits(&d), cfg_bits(&zero));
    assert!(d.order_table.is_null() && d.rng.is_null());
    for t in [2, 3] {
        let mut fx = FlatFx::new(t, true, M::Fixed, 0);
        let mut a = fx.args();
        a.cfg = zero;
        assert_eq!(a.merge(), PCGRAD_OK);
        let hb = fx.has_grad();
        let layout = Layout::new(t, N, &SEGS, &hb).unwrap();
        let mut want = vec![0.0f32; N];
        let mut ws = vec![0.0; crate::workspace_len(t).unwrap()];
        let st = PcGrad::with_mode(Mode::Sequential(Order::Fixed))
            .merge(&Flat::new(layout, &fx.grads).unwrap(), &mut want, &mut ws)
            .unwrap();
        assert_eq!(bits32(&fx.merged), bits32(&want));
        assert_eq!(fx.stats, stats_of(st));
    }
}

#[test]
fn explicit_order_table_may_be_null_only_when_empty() {
    // A NULL table that T >= 2 needs is a NULL pointer, not a length error.
    for (t, want) in [
        (1, PCGRAD_OK),
        (2, PCGRAD_ERROR_NULL_POINTER),
        (3, PCGRAD_ERROR_NULL_POINTER),
    ] {
        let mut fx = FlatFx::new(t, true, M::Explicit, 0);
        let before = fx.merged.clone();
        let mut a = fx.args();
        a.cfg.order_table = ptr::null();
        a.cfg.order_table_len = 0;
        assert_eq!(a.merge(), want, "T = {t}");
        if want != PCGRAD_OK {
            assert_eq!(bits32(&fx.merged), bits32(&before));
            continue;
        }
        let mut fixed = FlatFx::new(t, true, M::Fixed, 0);
        assert_eq!(fixed.args().merge(), PCGRAD_OK);
        assert_eq!(bits32(&fx.merged), bits32(&fixed.merged));
    }
}

#[test]
fn sizes_match_the_rust_api() {
    let call = |f: unsafe extern "C" fn(usize, *mut usize) -> pcgrad_status, t: usize| {
        let mut out = 4242usize;
        // SAFETY: `out` is a live, aligned `usize`.
        let st = unsafe { f(t, &mut out) };
        (st, out)
    };
    for t in [1, 2, 3, 4, 5, 8, 16] {
        let ws = crate::workspace_len(t).unwrap();
        assert_eq!(ws, 3 * t * t + 34 * t + 32);
        assert_eq!(call(pcgrad_workspace_len, t), (PCGRAD_OK, ws));
        assert_eq!(call(pcgrad_gram_len, t), (PCGRAD_OK, 2 * t * t));
        assert_eq!(call(pcgrad_coefficients_len, t), (PCGRAD_OK, t * t + 2 * t));
        assert_eq!(call(pcgrad_tile_len, t), (PCGRAD_OK, 32 * (t + 1)));
        for s in [0, 1, 3, 7] {
            let mut out = 0;
            // SAFETY: `out` is a live, aligned `usize`.
            let st = unsafe { pcgrad_workspace_len_vars(t, s, &mut out) };
            let need = ws + 2 * t * s + (t * s).div_ceil(8) + 2 * s;
            assert_eq!((st, out), (PCGRAD_OK, need));
        }
    }
    type SizeFn = unsafe extern "C" fn(usize, *mut usize) -> pcgrad_status;
    // With whether the size grows as T^2.
    let fns: [(SizeFn, bool); 4] = [
        (pcgrad_workspace_len, true),
        (pcgrad_gram_len, true),
        (pcgrad_coefficients_len, true),
        (pcgrad_tile_len, false),
    ];
    for (f, square) in fns {
        // Errors leave `*out` alone.
        assert_eq!(call(f, 0), (PCGRAD_ERROR_NO_TASKS, 4242));
        assert_eq!(call(f, usize::MAX), (PCGRAD_ERROR_OVERFLOW, 4242));
        if square {
            assert_eq!(
                call(f, 1 << (usize::BITS / 2)),
                (PCGRAD_ERROR_OVERFLOW, 4242)
            );
        }
        // SAFETY: NULL is refused before any write.
        assert_eq!(unsafe { f(2, ptr::null_mut()) }, PCGRAD_ERROR_NULL_POINTER);
        let mut cell = [0usize; 2];
        // SAFETY: misaligned, refused before any write.
        let st = unsafe { f(2, mis_mut(cell.as_mut_ptr())) };
        assert_eq!((st, cell), (PCGRAD_ERROR_MISALIGNED, [0, 0]));
    }
    let mut out = 4242usize;
    for (t, s, want) in [
        (0, 3, PCGRAD_ERROR_NO_TASKS),
        (2, usize::MAX, PCGRAD_ERROR_OVERFLOW),
        (usize::MAX, 1, PCGRAD_ERROR_OVERFLOW),
        (1, usize::MAX / 2, PCGRAD_ERROR_OVERFLOW),
    ] {
        // SAFETY: `out` is a live, aligned `usize`.
        let st = unsafe { pcgrad_workspace_len_vars(t, s, &mut out) };
        assert_eq!((st, out), (want, 4242));
    }
    // SAFETY: NULL is refused before any write.
    let st = unsafe { pcgrad_workspace_len_vars(1, 1, ptr::null_mut()) };
    assert_eq!(st, PCGRAD_ERROR_NULL_POINTER);
    // SAFETY: NULL / misaligned, refused before any write.
    unsafe {
        assert_eq!(
            pcgrad_config_default(ptr::null_mut()),
            PCGRAD_ERROR_NULL_POINTER
        );
        let mut c = [default_config(); 2];
        c[0].mode = 7;
        let p = mis_mut(c.as_mut_ptr());
        assert_eq!(pcgrad_config_default(p), PCGRAD_ERROR_MISALIGNED);
        assert_eq!(c[0].mode, 7);
    }
}

#[test]
fn flat_one_call_matches_the_rust_api() {
    flat_matches::<f32>();
}

/// `pcgrad_merge_flat_f64` / `pcgrad_project_flat_f64` against the Rust
/// API's `f64` path, bitwise.
#[test]
fn flat_one_call_f64_matches_the_rust_api() {
    flat_matches::<f64>();
}

/// The flat one-call entry points over `E` against `PcGrad` over `E`.
pub(super) fn flat_matches<E: CElem>() {
    let mut projections = 0;
    for &t in TASKS {
        for segmented in [false, true] {
            for &m in MODES {
                for &red in reductions(t, m) {
                    let table = order_table(t);
                    let matrix_kind = ((t + red as usize) % 2) as u32;
                    let mut fx = FlatFx::<E>::of(t, segmented, m, red);
                    fx.cfg.matrix = matrix_kind;
                    let hb = fx.has_grad();
                    let segs = fx.segs.clone();
                    let layout = Layout::new(t, N, &segs, &hb).unwrap();
                    let want_matrix = |ws: &[f64]| {
                        let g = workspace_gram(ws, t).unwrap();
                        if matrix_kind == PCGRAD_MATRIX_COSINE {
                            let mut c = vec![0.0; t * t];
                            cosine_matrix(g, t, &mut c).unwrap();
                            c
                        } else {
                            g.to_vec()
                        }
                    };

                    // Merge.
                    assert_eq!(run(&mut fx, FlatArgs::merge), PCGRAD_OK);
                    let mut rng = Rng::new(SEED);
                    let mut ws = vec![0.0; crate::workspace_len(t).unwrap()];
                    let mut merged = vec![E::default(); N];
                    let st = rust_pc(m, red, &table, &mut rng)
                        .merge(&Flat::new(layout, &fx.grads).unwrap(), &mut merged, &mut ws)
                        .unwrap();
                    assert_eq!(bits_of(&fx.merged), bits_of(&merged), "T={t} {m:?}");
                    assert_eq!(fx.stats, stats_of(st));
                    assert_eq!(bits64(&fx.matrix), bits64(&want_matrix(&ws)));
                    assert_eq!(fx.rng, rng);
                    projections += st.projections;

                    // Project in place, with and without merged.
                    for with_merged in [true, false] {
                        let mut fx = FlatFx::<E>::of(t, segmented, m, red);
                        fx.cfg.matrix = matrix_kind;
                        let mut a = fx.args();
                        if !with_merged {
                            (a.merged, a.merged_len) = (ptr::null_mut(), 0);
                            (a.stats, a.matrix, a.matrix_len) =
                                (ptr::null_mut(), ptr::null_mut(), 0);
                        }
                        assert_eq!(a.project(), PCGRAD_OK);
                        let mut rng = Rng::new(SEED);
                        let mut g = grads_as::<E>(t, segmented);
                        let mut merged = vec![E::default(); N];
                        let st = rust_pc(m, red, &table, &mut rng)
                            .project(
                                &mut FlatMut::new(layout, &mut g).unwrap(),
                                Some(&mut merged),
                                &mut ws,
                            )
                            .unwrap();
                        assert_eq!(bits_of(&fx.grads), bits_of(&g));
                        assert_eq!(fx.rng, rng);
                        if with_merged {
                            assert_eq!(bits_of(&fx.merged), bits_of(&merged));
                            assert_eq!(fx.stats, stats_of(st));
                            assert_eq!(bits64(&fx.matrix), bits64(&want_matrix(&ws)));
                        } else {
                            assert!(fx.merged.iter().all(|x| x.bits() == E::SENT.bits()));
                            assert_eq!(fx.stats, STATS_SENT);
                        }
                    }
                }
            }
        }
    }
    assert!(projections > 0, "the problems have no conflicts");
}

/// The `_f64` flat calls agree with the `f32` ones on the same
/// (f32-representable) data to within f32 rounding, with the same
/// statistics and PRNG advance.
#[test]
fn flat_f64_entry_points_agree_with_the_f32_ones() {
    for &t in TASKS {
        for &m in MODES {
            for &red in reductions(t, m) {
                let mut a = FlatFx::new(t, true, m, red);
                let mut b = FlatFx::<f64>::of(t, true, m, red);
                assert_eq!(run(&mut a, FlatArgs::merge), PCGRAD_OK);
                assert_eq!(run(&mut b, FlatArgs::merge), PCGRAD_OK);
                assert_eq!(a.stats, b.stats, "T={t} {m:?}");
                assert_eq!(a.rng, b.rng);
                let scale = b.merged.iter().fold(1.0f64, |s, x| s.max(x.abs()));
                for (x, y) in a.merged.iter().zip(&b.merged) {
                    assert!(
                        (f64::from(*x) - y).abs() <= 1e-6 * scale,
                        "T={t} {m:?}: {x} vs {y}"
                    );
                }
                let mut pa = FlatFx::new(t, true, m, red);
                let mut pb = FlatFx::<f64>::of(t, true, m, red);
                assert_eq!(run(&mut pa, FlatArgs::project), PCGRAD_OK);
                assert_eq!(run(&mut pb, FlatArgs::project), PCGRAD_OK);
                assert_eq!(bits_of(&pb.merged), bits_of(&b.merged));
                for (x, y) in pa.grads.iter().zip(&pb.grads) {
                    assert!((f64::from(*x) - y).abs() <= 1e-6 * scale.max(y.abs()));
                }
            }
        }
    }
}

/// Column ranges of a three-way split of 0..N.
const CUTS: [(usize, usize); 3] = [(0, 4), (4, 9), (9, N)];

#[test]
fn three_phases_equal_the_one_call_result() {
    for &t in TASKS {
        for &m in MODES {
            for &red in reductions(t, m) {
                // The one-call result, through the C ABI.
                let mut one = FlatFx::new(t, true, m, red);
                assert_eq!(run(&mut one, FlatArgs::merge), PCGRAD_OK);
                let mut one_p = FlatFx::new(t, true, m, red);
                assert_eq!(run(&mut one_p, FlatArgs::project), PCGRAD_OK);

                let mut fx = PhFx::new(t, m);
                fx.cfg.reduction = red;
                let mut gram = vec![0.0; 2 * t * t];
                for (lo, hi) in CUTS {
                    // Each shard: a zeroed partial, then the all-reduce.
                    let mut a = fx.args();
                    let mut partial = vec![0.0; 2 * t * t];
                    (a.lo, a.hi, a.gram) = (lo, hi, partial.as_mut_ptr());
                    assert_eq!(a.gram_flat(), PCGRAD_OK);
                    (a.partial, a.gram) = (partial.as_ptr(), gram.as_mut_ptr());
                    assert_eq!(a.combine(), PCGRAD_OK);
                }
                assert_eq!(bits64(&gram[..t * t]), bits64(&one.matrix));

                let mut coef = vec![SENT64; t * t + 2 * t];
                let mut a = fx.args();
                (a.gram, a.coef, a.coef_len) = (gram.as_mut_ptr(), coef.as_mut_ptr(), coef.len());
                assert_eq!(a.coefficients(), PCGRAD_OK);
                assert_eq!(fx.stats, one.stats);
                assert_eq!(fx.rng, one.rng);

                let mut merged = vec![SENT32; N];
                let mut merged_p = vec![SENT32; N];
                for (lo, hi) in CUTS {
                    let mut a = fx.args();
                    (a.lo, a.hi, a.reduction) = (lo, hi, red);
                    (a.coef, a.coef_len) = (coef.as_mut_ptr(), coef.len());
                    (a.merged, a.merged_len) = (merged[lo..hi].as_mut_ptr(), hi - lo);
                    assert_eq!(a.apply_merged(), PCGRAD_OK);
                    (a.merged, a.merged_len) = (merged_p[lo..hi].as_mut_ptr(), hi - lo);
                    assert_eq!(a.apply_projected(), PCGRAD_OK);
                }
                assert_eq!(
                    bits32(&merged),
                    bits32(&one.merged),
                    "T={t} {m:?} red={red}"
                );
                assert_eq!(bits32(&merged_p), bits32(&one_p.merged));
                assert_eq!(bits32(&fx.grads), bits32(&one_p.grads));
            }
        }
    }
}

#[test]
fn per_variable_equals_flat_with_masks() {
    for &t in TASKS {
        for &m in MODES {
            for &red in reductions(t, m) {
                // Flat, with has_grad masks (GARBAGE where absent).
                let mut flat = FlatFx::new(t, true, m, red);
                assert_eq!(run(&mut flat, FlatArgs::merge), PCGRAD_OK);
                let mut flat_p = FlatFx::new(t, true, m, red);
                assert_eq!(run(&mut flat_p, FlatArgs::project), PCGRAD_OK);

                // Per variable, NULL where absent.
                let mut v = VarsFx::new(t, m, red);
                assert_eq!(run(&mut v, VarsArgs::merge), PCGRAD_OK);
                assert_eq!(bits32(&v.merged()), bits32(&flat.merged), "T={t} {m:?}");
                assert_eq!(v.stats, flat.stats);
                assert_eq!(bits64(&v.matrix), bits64(&flat.matrix));
                assert_eq!(v.rng, flat.rng);

                for with_merged in [true, false] {
                    let mut v = VarsFx::new(t, m, red);
                    let mut a = v.args();
                    if !with_merged {
                        (a.merged, a.merged_len) = (Some(ptr::null()), 0);
                    }
                    assert_eq!(a.project(), PCGRAD_OK);
                    for (c, cell) in v.cells.iter().enumerate() {
                        let (i, s) = (c / S, c % S);
                        let at = i * N + seg_start(s);
                        if present(i, s) {
                            assert_eq!(bits32(cell), bits32(&flat_p.grads[at..at + SEGS[s]]));
                        } else {
                            assert!(cell.is_empty());
                        }
                    }
                    if with_merged {
                        assert_eq!(bits32(&v.merged()), bits32(&flat_p.merged));
                    } else {
                        assert!(v.merged().iter().all(|x| x.to_bits() == SENT32.to_bits()));
                    }
                    assert_eq!(v.stats, flat_p.stats);
                    assert_eq!(v.rng, flat_p.rng);
                }
            }
        }
    }
}

#[test]
fn pack_and_unflatten_match_the_rust_api() {
    for &t in TASKS {
        let mut fx = PackFx::new(t);
        assert_eq!(run(&mut fx, PackArgs::pack), PCGRAD_OK);
        let opts: Vec<Option<&[f32]>> = fx
            .cells
            .iter()
            .map(|c| (!c.is_empty()).then_some(&c[..]))
            .collect();
        let mut out = vec![SENT32; t * N];
        let mut hg = vec![false; t * S];
        pack(t, &SEGS, &opts, &mut out, &mut hg).unwrap();
        assert_eq!(bits32(&fx.out), bits32(&out));
        assert_eq!(fx.hg, mask_bytes(t));
        assert_eq!(fx.hg, hg.iter().map(|&b| u8::from(b)).collect::<Vec<_>>());
        // The packed buffer is the flat problem with zeros where absent.
        let mut want = grads(t, false);
        for (c, &h) in hg.iter().enumerate() {
            if !h {
                let at = (c / S) * N + seg_start(c % S);
                want[at..at + SEGS[c % S]].fill(0.0);
            }
        }
        assert_eq!(bits32(&fx.out), bits32(&want));
        // ... and merges like the per-variable call.
        let mut flat = FlatFx::new(t, true, M::Fixed, 0);
        flat.grads.copy_from_slice(&fx.out);
        assert_eq!(run(&mut flat, FlatArgs::merge), PCGRAD_OK);
        let mut v = VarsFx::new(t, M::Fixed, 0);
        assert_eq!(run(&mut v, VarsArgs::merge), PCGRAD_OK);
        assert_eq!(bits32(&flat.merged), bits32(&v.merged()));
    }
    let mut fx = UnFx::new();
    assert_eq!(run(&mut fx, UnArgs::unflatten), PCGRAD_OK);
    let mut outs: Vec<Vec<f32>> = SEGS.iter().map(|&l| vec![0.0; l]).collect();
    let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[..]).collect();
    unflatten(&SEGS, &fx.flat, &mut refs).unwrap();
    assert_eq!(fx.outs, outs);
    assert_eq!(fx.outs.concat(), fx.flat);
}

#[test]
fn rng_advances_only_on_success_with_a_shuffled_order() {
    let t = 3;
    // Sequential shuffled: advances, as the Rust API's PRNG does.
    let mut fx = FlatFx::new(t, true, M::Shuffled, 0);
    assert_eq!(run(&mut fx, FlatArgs::merge), PCGRAD_OK);
    assert_ne!(fx.rng, Rng::new(SEED));
    let mut rng = Rng::new(SEED);
    let mut ws = vec![0.0; crate::workspace_len(t).unwrap()];
    let hb = fx.has_grad();
    let layout = Layout::new(t, N, &SEGS, &hb).unwrap();
    PcGrad::new(&mut rng)
        .merge(
            &Flat::new(layout, &fx.grads).unwrap(),
            &mut [0.0; N],
            &mut ws,
        )
        .unwrap();
    assert_eq!(fx.rng, rng);
    // A second call advances it again.
    assert_eq!(run(&mut fx, FlatArgs::project), PCGRAD_OK);
    assert_ne!(fx.rng, rng);
    // Other orders and modes never touch it, even when it is set.
    for m in [M::Fixed, M::Explicit, M::Simultaneous] {
        let mut fx = FlatFx::new(t, true, m, 0);
        assert_eq!(run(&mut fx, FlatArgs::merge), PCGRAD_OK);
        assert_eq!(run(&mut fx, FlatArgs::project), PCGRAD_OK);
        assert_eq!(fx.rng, Rng::new(SEED));
        let mut v = VarsFx::new(t, m, 0);
        assert_eq!(run(&mut v, VarsArgs::merge), PCGRAD_OK);
        assert_eq!(v.rng, Rng::new(SEED));
        let mut p = PhFx::new(t, m);
        assert_eq!(run(&mut p, PhArgs::coefficients), PCGRAD_OK);
        assert_eq!(p.rng, Rng::new(SEED));
    }
    // Simultaneous mode and fixed order need no PRNG at all.
    for m in [M::Fixed, M::Simultaneous] {
        let mut fx = FlatFx::new(t, true, m, 0);
        let mut a = fx.args();
        a.cfg.rng = ptr::null_mut();
        assert_eq!(a.merge(), PCGRAD_OK);
    }
    // The phase API and the per-variable calls advance it on success.
    let mut v = VarsFx::new(t, M::Shuffled, 0);
    assert_eq!(run(&mut v, VarsArgs::project), PCGRAD_OK);
    assert_eq!(v.rng, rng);
    let mut p = PhFx::new(t, M::Shuffled);
    assert_eq!(run(&mut p, PhArgs::coefficients), PCGRAD_OK);
    assert_ne!(p.rng, Rng::new(SEED));
    // A failure (here NaN with check_finite) leaves it as it was.
    let mut fx = FlatFx::new(t, true, M::Shuffled, 0);
    fx.grads[1] = f32::NAN;
    fx.cfg.check_finite = 1;
    fails(&mut fx, PCGRAD_ERROR_NON_FINITE, FlatArgs::merge, |_| {});
    assert_eq!(fx.rng, Rng::new(SEED));
}

#[test]
fn values_where_a_task_has_no_gradient_are_ignored() {
    for nonfinite in [f32::NAN, f32::INFINITY] {
        let mut clean = FlatFx::new(3, true, M::Fixed, 0);
        assert_eq!(run(&mut clean, FlatArgs::merge), PCGRAD_OK);
        let mut fx = FlatFx::new(3, true, M::Fixed, 0);
        for x in fx.grads.iter_mut().filter(|x| **x == GARBAGE) {
            *x = nonfinite;
        }
        fx.cfg.check_finite = 1;
        assert_eq!(run(&mut fx, FlatArgs::merge), PCGRAD_OK);
        assert_eq!(bits32(&fx.merged), bits32(&clean.merged));
    }
}

/// The docs of the C enumerators in the header are the `doc` column of the
/// error table, and its names and codes are the header's.
#[test]
fn header_enum_docs_come_from_the_error_table() {
    let header = include_str!("../../../include/pcgrad.h");
    for row in &crate::error::ERRORS {
        let at = header
            .find(&std::format!("  {} = {},\n", row.name, row.error.code()))
            .unwrap_or_else(|| panic!("{} is in the header", row.name));
        let open = header[..at].rfind("/**").unwrap();
        let doc: Vec<&str> = header[open + 3..at]
            .lines()
            .map(|l| l.trim().trim_start_matches('*').trim())
            .filter(|l| !l.is_empty() && *l != "/")
            .collect();
        assert_eq!(doc.join(" "), row.doc, "the header's doc of {}", row.name);
        assert_eq!(Error::from_code(row.error.code()), Some(row.error));
        assert_eq!(row.text.to_str().unwrap(), row.error.as_str());
    }
    assert_eq!(Error::from_code(0), None);
    assert_eq!(Error::from_code(-15), None);
}
