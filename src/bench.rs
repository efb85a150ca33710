//! **Unstable, for benchmarks only.** Not part of the crate's API: no
//! semantic-versioning promise covers this module, and it may change or go
//! in any release (as BLAKE3's `guts` module). It lets the roofline example
//! and the benches time the kernels of one instruction set against another
//! in one process: the kernels are chosen by an explicit [`Kernels`] value,
//! never by global state.

pub use crate::kernels::{Isa, Kernels, BLOCK};

use crate::engine::Stats;
use crate::error::Result;
use crate::kernels::Element;
use crate::layout::Gradients;
use crate::PcGrad;

/// [`PcGrad::merge`] on the calling thread with the kernels `k`, whatever
/// `pcgrad.threads` says; bitwise the result of [`PcGrad::merge`].
pub fn merge_on<F: Element, G: Gradients<F>>(
    k: Kernels,
    pcgrad: &mut PcGrad<'_>,
    grads: &G,
    merged: &mut [F],
    workspace: &mut [f64],
) -> Result<Stats> {
    pcgrad.merge_on(Some(k), grads, merged, workspace)
}

/// The compute-roof probe: `iters` steps of 12 independent vector
/// multiply-adds (8 `f32` lanes each) in the lane arithmetic of the Gram
/// kernels of `k` (a multiply, then an add). Returns a value that depends on
/// every step; the caller times it (12 x 8 products per step).
pub fn peak(k: Kernels, iters: usize) -> f32 {
    let buf: [[f32; 8]; crate::kernels::PEAK_VECS] =
        core::array::from_fn(|i| core::array::from_fn(|l| 1.0 + (i * 8 + l) as f32 * 1e-6));
    k.peak(&buf, iters)
}

/// Products per step of [`peak`].
pub const PEAK_PRODUCTS: usize = 12 * 8;

/// The `f64` compute-roof probe: `iters` steps of four independent vector
/// multiply-adds (8 `f64` lanes each, `acc + x * c` with `x` loaded from an
/// L1 buffer, a multiply then an add) in the `f64` lane arithmetic of the
/// kernels of `k`: the rate of the projected apply's combination of rows.
/// Returns a value that depends on every step; the caller times it
/// ([`PEAK_F64_PRODUCTS`] products per step).
pub fn peak_f64(k: Kernels, iters: usize) -> f64 {
    let buf: [[f64; 8]; crate::kernels::PEAK_VECS] =
        core::array::from_fn(|i| core::array::from_fn(|l| 1.0 + (i * 8 + l) as f64 * 1e-6));
    k.peak_f64(&buf, iters)
}

/// Products per step of [`peak_f64`].
pub const PEAK_F64_PRODUCTS: usize = crate::kernels::PEAK_F64_PRODUCTS;

/// The vector width of the streaming kernels below: `"AVX-512F"` (16
/// lanes) or `"AVX"` (8 lanes) when the CPU has them (x86-64 with `std`),
/// else `"portable"` (`wide::f32x8` on the compile-time backend).
pub fn stream_isa() -> &'static str {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return "AVX-512F";
        }
        if std::is_x86_feature_detected!("avx") {
            return "AVX";
        }
    }
    "portable"
}

/// The fastest streaming read of `x` this module can do: the sum of its
/// elements in several independent accumulators of the widest vectors
/// ([`stream_isa`]). The memory roof of a read.
pub fn read(x: &[f32]) -> f32 {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            #[allow(unsafe_code)]
            return unsafe { stream::read_avx512(x) };
        }
        if std::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX (checked just above).
            #[allow(unsafe_code)]
            return unsafe { stream::read_avx(x) };
        }
    }
    portable::read(x)
}

/// [`read`] of up to four slices at once, in lockstep (several memory
/// streams; on some machines faster than one), then the rest of each.
/// Slices past the fourth are ignored.
pub fn read4(x: &[&[f32]]) -> f32 {
    let x = &x[..x.len().min(4)];
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            #[allow(unsafe_code)]
            return unsafe { stream::read4_avx512(x) };
        }
        if std::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX (checked just above).
            #[allow(unsafe_code)]
            return unsafe { stream::read4_avx(x) };
        }
    }
    x.iter().map(|r| portable::read(r)).sum()
}

/// The least traffic of an apply pass that reads every row and writes one
/// output: `out[c] = sum_r rows[r][c]` over `c < out.len()` (every row at
/// least that long), in the widest vectors, with ordinary stores or, when
/// `nt`, non-temporal ones (which skip the read-for-ownership of `out`).
/// Then, when `write_rows`, every row is also written back negated (the
/// in-place projected pass's traffic: read J, write J, write N). Rows
/// shorter than `out` make it do nothing.
pub fn read_write(rows: &mut [&mut [f32]], out: &mut [f32], write_rows: bool, nt: bool) {
    if rows.iter().any(|r| r.len() < out.len()) {
        return;
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above); every row
            // holds at least `out.len()` values.
            #[allow(unsafe_code)]
            return unsafe { stream::read_write_avx512(rows, out, write_rows, nt) };
        }
        if std::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX (checked just above); every row holds
            // at least `out.len()` values.
            #[allow(unsafe_code)]
            return unsafe { stream::read_write_avx(rows, out, write_rows, nt) };
        }
    }
    // The portable kernel has no non-temporal stores.
    let _ = nt;
    portable::read_write(rows, out, write_rows)
}

/// The 16-bit values `x` (bf16 or f16 bit patterns) as the `f32` words of
/// the same bytes, for the streaming kernels above: memory traffic is bytes,
/// so [`read`], [`read4`] and [`read_write`] over these words move exactly
/// the bytes a half-precision pass moves. Only the whole, aligned words: the
/// at most one value at each end outside them is left out (at most 4 bytes
/// per slice). On little-endian targets each word takes its sign and
/// exponent from the odd-indexed value of its pair, so words over gradients
/// are normal floats as the gradients are (no subnormal operands).
pub fn words(x: &[u16]) -> &[f32] {
    // SAFETY: every 32-bit pattern is a valid `f32`; `align_to` gives the
    // aligned middle of the same bytes, borrowed for the lifetime of `x`.
    #[allow(unsafe_code)]
    let (_, mid, _) = unsafe { x.align_to::<f32>() };
    mid
}

/// [`words`], mutable (for the write passes).
pub fn words_mut(x: &mut [u16]) -> &mut [f32] {
    // SAFETY: as in `words`: every 32-bit pattern is a valid `f32` (and
    // every 16-bit one a valid `u16`, for what the kernels write).
    #[allow(unsafe_code)]
    let (_, mid, _) = unsafe { x.align_to_mut::<f32>() };
    mid
}

/// The streaming kernels on the compile-time backend.
mod portable {
    use wide::f32x8;

    pub fn read(x: &[f32]) -> f32 {
        let (chunks, tail) = x.as_chunks::<64>();
        let mut acc = [f32x8::ZERO; 8];
        for c in chunks {
            let (v, _) = c.as_chunks::<8>();
            for k in 0..8 {
                acc[k] += f32x8::from(v[k]);
            }
        }
        let s = acc.iter().fold(f32x8::ZERO, |a, &b| a + b);
        s.reduce_add() + tail.iter().sum::<f32>()
    }

    pub fn read_write(rows: &mut [&mut [f32]], out: &mut [f32], write_rows: bool) {
        let n = out.len();
        let mut c = 0;
        while c + 8 <= n {
            let mut s = f32x8::ZERO;
            for r in rows.iter_mut() {
                let v = &mut r[c..c + 8];
                let x = f32x8::from([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
                s += x;
                if write_rows {
                    v.copy_from_slice(&(-x).to_array());
                }
            }
            out[c..c + 8].copy_from_slice(&s.to_array());
            c += 8;
        }
        for c in c..n {
            let mut s = 0.0;
            for r in rows.iter_mut() {
                s += r[c];
                if write_rows {
                    r[c] = -r[c];
                }
            }
            out[c] = s;
        }
    }
}

/// The streaming kernels on explicit AVX and AVX-512F registers, selected
/// at run time by the functions above.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[allow(unsafe_code)]
mod stream {
    use core::arch::x86_64::*;

    macro_rules! kernels {
        ($read:ident, $read4:ident, $rw:ident, $feat:literal, $v:ty, $lanes:literal, $zero:ident, $load:ident,
         $add:ident, $sub:ident, $store:ident, $stream:ident, $reduce:expr) => {
            /// Eight independent accumulators over the whole vectors, then
            /// the tail.
            ///
            /// # Safety
            /// The CPU must have the target feature.
            #[target_feature(enable = $feat)]
            pub unsafe fn $read(x: &[f32]) -> f32 {
                let (chunks, tail) = x.as_chunks::<{ 8 * $lanes }>();
                let mut acc: [$v; 8] = [$zero(); 8];
                for c in chunks {
                    for k in 0..8 {
                        // SAFETY: `c` holds 8 vectors of `$lanes` floats.
                        acc[k] = $add(acc[k], unsafe { $load(c.as_ptr().add(k * $lanes)) });
                    }
                }
                let mut s = $zero();
                for a in acc {
                    s = $add(s, a);
                }
                let s: [f32; $lanes] = core::mem::transmute(s);
                let r: fn([f32; $lanes]) -> f32 = $reduce;
                r(s) + tail.iter().sum::<f32>()
            }

            /// Two accumulators per slice, the slices in lockstep over
            /// their common length, then the rest of each by `$read`.
            ///
            /// # Safety
            /// The CPU must have the target feature.
            #[target_feature(enable = $feat)]
            pub unsafe fn $read4(x: &[&[f32]]) -> f32 {
                let len =
                    x.iter().map(|r| r.len()).min().unwrap_or(0) / (2 * $lanes) * (2 * $lanes);
                let mut acc: [[$v; 2]; 4] = [[$zero(); 2]; 4];
                let mut c = 0;
                while c < len {
                    for (r, a) in x.iter().zip(acc.iter_mut()) {
                        let p = r.as_ptr();
                        // SAFETY: `c + 2 * $lanes <= len <= r.len()`.
                        unsafe {
                            a[0] = $add(a[0], $load(p.add(c)));
                            a[1] = $add(a[1], $load(p.add(c + $lanes)));
                        }
                    }
                    c += 2 * $lanes;
                }
                let mut s = $zero();
                for a in acc {
                    s = $add(s, $add(a[0], a[1]));
                }
                let s: [f32; $lanes] = core::mem::transmute(s);
                let r: fn([f32; $lanes]) -> f32 = $reduce;
                // SAFETY: the CPU has the target feature.
                r(s) + x.iter().map(|r| unsafe { $read(&r[len..]) }).sum::<f32>()
            }

            /// `out = sum of rows` (and rows negated when `write_rows`),
            /// four vectors per step.
            ///
            /// # Safety
            /// The CPU must have the target feature, and every row must
            /// hold at least `out.len()` values.
            #[target_feature(enable = $feat)]
            pub unsafe fn $rw(
                rows: &mut [&mut [f32]],
                out: &mut [f32],
                write_rows: bool,
                nt: bool,
            ) {
                const STEP: usize = 4 * $lanes;
                let n = out.len();
                // Scalar head up to the alignment of a vector (for the
                // non-temporal stores).
                let head = out.as_ptr().align_offset(4 * $lanes).min(n);
                let scalar = |rows: &mut [&mut [f32]], out: &mut [f32], c: usize| {
                    let mut s = 0.0;
                    for r in rows.iter_mut() {
                        s += r[c];
                        if write_rows {
                            r[c] = -r[c];
                        }
                    }
                    out[c] = s;
                };
                for c in 0..head {
                    scalar(rows, out, c);
                }
                let mut c = head;
                let o = out.as_mut_ptr();
                while c + STEP <= n {
                    let mut s: [$v; 4] = [$zero(); 4];
                    for r in rows.iter_mut() {
                        let p = r.as_mut_ptr();
                        for k in 0..4 {
                            // SAFETY: `c + STEP <= n <= r.len()`.
                            let x = unsafe { $load(p.add(c + k * $lanes)) };
                            s[k] = $add(s[k], x);
                            if write_rows {
                                // SAFETY: as the load.
                                unsafe { $store(p.add(c + k * $lanes), $sub($zero(), x)) };
                            }
                        }
                    }
                    for k in 0..4 {
                        // SAFETY: `c + STEP <= n`; from `head` on, `o + c`
                        // is vector-aligned (`c - head` is a multiple of
                        // the vector).
                        unsafe {
                            if nt {
                                $stream(o.add(c + k * $lanes), s[k]);
                            } else {
                                $store(o.add(c + k * $lanes), s[k]);
                            }
                        }
                    }
                    c += STEP;
                }
                if nt {
                    _mm_sfence();
                }
                for c in c..n {
                    scalar(rows, out, c);
                }
            }
        };
    }

    kernels!(
        read_avx,
        read4_avx,
        read_write_avx,
        "avx",
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_add_ps,
        _mm256_sub_ps,
        _mm256_storeu_ps,
        _mm256_stream_ps,
        |s| s.iter().sum()
    );
    kernels!(
        read_avx512,
        read4_avx512,
        read_write_avx512,
        "avx512f",
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_add_ps,
        _mm512_sub_ps,
        _mm512_storeu_ps,
        _mm512_stream_ps,
        |s| s.iter().sum()
    );
}
