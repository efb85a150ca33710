//! Every status code with real bad input.

use super::*;

/// `fails` for each `(status, &|args| edit)` case in turn.
macro_rules! cases {
    ($fx:expr, $call:expr; $( ($want:expr, &|$a:ident| $body:expr) ),* $(,)?) => {
        $( fails_case(stringify!($body), &mut $fx, $want, $call, |$a| { $body; }); )*
    };
}

/// Out-of-range values for each enum field of `pcgrad_config`.
fn bad_enums() -> [(&'static str, u32); 12] {
    [
        ("mode", 2),
        ("mode", 3),
        ("mode", u32::MAX),
        ("order", 3),
        ("order", u32::MAX),
        ("reduction", 2),
        ("reduction", u32::MAX),
        ("check_finite", 2),
        ("check_finite", 3),
        ("check_finite", u32::MAX),
        ("matrix", 2),
        ("matrix", u32::MAX),
    ]
}

fn set_enum(c: &mut pcgrad_config, field: &str, v: u32) {
    match field {
        "mode" => c.mode = v,
        "order" => c.order = v,
        "reduction" => c.reduction = v,
        "check_finite" => c.check_finite = v,
        _ => c.matrix = v,
    }
}

/// Bad explicit tables for T = 3 (valid: `[2, 1, 2, 0, 1, 0]`), with the
/// status each must give.
fn bad_tables() -> [(Vec<u32>, pcgrad_status); 6] {
    [
        (vec![2, 2, 2, 0, 1, 0], PCGRAD_ERROR_INVALID_ORDER),
        (vec![0, 1, 2, 0, 1, 0], PCGRAD_ERROR_INVALID_ORDER),
        (vec![2, 1, 2, 0, 1, 3], PCGRAD_ERROR_INVALID_ORDER),
        (vec![2, 1, 2, 0, 1, u32::MAX], PCGRAD_ERROR_INVALID_ORDER),
        (vec![2, 1, 2, 0, 1], PCGRAD_ERROR_LENGTH_MISMATCH),
        (vec![2, 1, 2, 0, 1, 0, 1], PCGRAD_ERROR_LENGTH_MISMATCH),
    ]
}

/// The config-level failures every config-taking call shares.
fn config_failures<F: Fixture>(
    new: impl Fn(M) -> F,
    call: impl Fn(&F::Args) -> pcgrad_status + Copy,
    cfg: impl Fn(&mut F::Args) -> &mut pcgrad_config + Copy,
    config: impl Fn(&mut F::Args) -> &mut Option<*const pcgrad_config> + Copy,
) {
    let mut fx = new(M::Fixed);
    fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
        *config(a) = Some(ptr::null())
    });
    fails(&mut fx, PCGRAD_ERROR_MISALIGNED, call, |a| {
        let p: *const pcgrad_config = cfg(a);
        *config(a) = Some(mis(p));
    });
    for (field, v) in bad_enums() {
        let case = std::format!("config.{field} = {v}");
        fails_case(&case, &mut fx, PCGRAD_ERROR_INVALID_ENUM, call, |a| {
            set_enum(cfg(a), field, v)
        });
    }
    // The PRNG: required (and aligned) for a shuffled order only.
    let mut fx = new(M::Shuffled);
    fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
        cfg(a).rng = ptr::null_mut()
    });
    fails(&mut fx, PCGRAD_ERROR_MISALIGNED, call, |a| {
        cfg(a).rng = mis_mut(cfg(a).rng)
    });
    // The PRNG inside the config struct that the call reads.
    fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
        let c = cfg(a);
        c.rng = (c as *mut pcgrad_config).cast();
    });
    // The explicit table.
    let mut fx = new(M::Explicit);
    fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
        cfg(a).order_table = ptr::null()
    });
    fails(&mut fx, PCGRAD_ERROR_MISALIGNED, call, |a| {
        cfg(a).order_table = mis(cfg(a).order_table)
    });
    fails(&mut fx, PCGRAD_ERROR_OVERFLOW, call, |a| {
        cfg(a).order_table_len = usize::MAX
    });
    for (table, want) in bad_tables() {
        fails(&mut fx, want, call, |a| {
            let c = cfg(a);
            (c.order_table, c.order_table_len) = (table.as_ptr(), table.len());
        });
    }
}

#[test]
fn one_call_flat_refuses_bad_input() {
    flat_refusals::<f32>();
}

/// The same table for the `_f64` entry points.
#[test]
fn one_call_flat_f64_refuses_bad_input() {
    flat_refusals::<f64>();
}

/// The first address at or after `p` aligned for a `u32` (never
/// dereferenced by the tests).
fn aligned_u32<T>(p: *mut T) -> *const u32 {
    let b = p.cast_const().cast::<u8>();
    b.wrapping_add(b.align_offset(core::mem::align_of::<u32>()))
        .cast()
}

/// Every refusal of `pcgrad_merge_flat` / `pcgrad_project_flat` (or their
/// `_f64` forms, for `E = f64`).
pub(super) fn flat_refusals<E: CElem>() {
    type Call<E> = fn(&FlatArgs<E>) -> pcgrad_status;
    for (call, project) in [
        (FlatArgs::merge as Call<E>, false),
        (FlatArgs::project, true),
    ] {
        config_failures(
            |m| FlatFx::<E>::of(3, true, m, 0),
            call,
            |a| &mut a.cfg,
            |a| &mut a.config,
        );
        let mut fx = FlatFx::<E>::of(3, true, M::Shuffled, 0);
        let t = 3;
        use pcgrad_status::*;
        let bad_segs = [5usize, 1, 6];
        cases!(fx, call;
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.grads = ptr::null_mut()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.segments = ptr::null()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.has_grad = ptr::null()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.matrix = ptr::null_mut()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.ws = ptr::null_mut()),
            (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.grads_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.dim += 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.merged_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.matrix_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.has_grad_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.segments_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| {
                a.segments = bad_segs.as_ptr()
            }),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.dim = usize::MAX),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.dim = usize::MAX / 2 + 1),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.grads_len = usize::MAX),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.ws_len = usize::MAX),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.matrix_len = usize::MAX / 4),
            (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.ws_len -= 1),
            (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.ws_len = 0),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.grads = mis_mut(a.grads)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.segments = mis(a.segments)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.merged = mis_mut(a.merged)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.stats = mis_mut(a.stats)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.matrix = mis_mut(a.matrix)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.ws = mis_mut(a.ws)),
            // Outputs over inputs, outputs over each other.
            (PCGRAD_ERROR_OVERLAP, &|a| {
                a.merged = a.grads.wrapping_add(2)
            }),
            (PCGRAD_ERROR_OVERLAP, &|a| a.matrix = a.ws.wrapping_add(5)),
            (PCGRAD_ERROR_OVERLAP, &|a| a.stats = a.ws.cast()),
            (PCGRAD_ERROR_OVERLAP, &|a| {
                a.cfg.rng = a.ws.wrapping_add(1).cast()
            }),
        );
        // The config struct inside the workspace (zeroed here, so that
        // it reads as a valid config and the overlap check decides).
        let mut fx = FlatFx::<E>::of(t, true, M::Fixed, 0);
        fx.ws.fill(0.0);
        fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
            a.config = Some(a.ws.cast_const().wrapping_add(2).cast())
        });
        // has_grad bytes must be 0 or 1.
        let mut fx = FlatFx::<E>::of(t, true, M::Fixed, 0);
        fx.hg[4] = 2;
        fails(&mut fx, PCGRAD_ERROR_INVALID_ENUM, call, |_| {});
        fx.hg[4] = 255;
        fails(&mut fx, PCGRAD_ERROR_INVALID_ENUM, call, |_| {});
        // NaN / Inf with check_finite = 1 (and a shuffled PRNG that must
        // not advance).
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY].map(E::from_f64) {
            let mut fx = FlatFx::<E>::of(t, true, M::Shuffled, 0);
            fx.grads[2 * N + 12] = x;
            fx.cfg.check_finite = 1;
            fails(&mut fx, PCGRAD_ERROR_NON_FINITE, call, |_| {});
        }
        // The explicit table may not lie in an output (at its first
        // address aligned for a `u32`: a buffer of 2-byte elements need
        // not be).
        let mut fx = FlatFx::<E>::of(t, true, M::Explicit, 0);
        fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
            a.cfg.order_table = aligned_u32(a.merged)
        });
        if project {
            // The in-place gradients are an output too.
            fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
                a.cfg.order_table = aligned_u32(a.grads)
            });
        } else {
            // ... but inputs may overlap each other.
            let mut fx = FlatFx::<E>::of(t, false, M::Fixed, 0);
            let mut a = fx.args();
            a.segments = ptr::null();
            assert_eq!(call(&a), PCGRAD_OK);
            // `merged` is required for merge; NULL with length 0 too.
            fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
                (a.merged, a.merged_len) = (ptr::null_mut(), 0)
            });
            fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
                a.merged = ptr::null_mut()
            });
        }
        if project {
            let mut fx = FlatFx::<E>::of(t, true, M::Fixed, 0);
            fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
                a.merged = ptr::null_mut()
            });
        }
    }
}

#[test]
fn per_variable_refuses_bad_input() {
    let t = 3;
    type Call = fn(&VarsArgs) -> pcgrad_status;
    for (call, project) in [(VarsArgs::merge as Call, false), (VarsArgs::project, true)] {
        config_failures(
            |m| VarsFx::new(t, m, 0),
            call,
            |a| &mut a.cfg,
            |a| &mut a.config,
        );
        let mut fx = VarsFx::new(t, M::Shuffled, 0);
        let huge = [usize::MAX, 1, 1];
        let big = [usize::MAX / 2, 0, 0];
        cases!(fx, call;
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.grads = Some(ptr::null())),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.segments = ptr::null()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.merged = Some(ptr::null())),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.mtab[1] = ptr::null_mut()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.matrix = ptr::null_mut()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.ws = ptr::null_mut()),
            (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.grads_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.tasks = 2),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.merged_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.segments_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.matrix_len += 1),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.segments = huge.as_ptr()),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.segments = big.as_ptr()),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.grads_len = usize::MAX),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.tasks = usize::MAX),
            (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.ws_len -= 1),
            (PCGRAD_ERROR_MISALIGNED, &|a| {
                a.grads = Some(mis(a.gtab.as_ptr()))
            }),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.gtab[4] = mis_mut(a.gtab[4])),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.segments = mis(a.segments)),
            (PCGRAD_ERROR_MISALIGNED, &|a| {
                a.merged = Some(mis(a.mtab.as_ptr()))
            }),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.mtab[2] = mis_mut(a.mtab[2])),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.stats = mis_mut(a.stats)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.matrix = mis_mut(a.matrix)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.ws = mis_mut(a.ws)),
            // A merged buffer over a gradient, two merged buffers over
            // each other, diagnostics or the PRNG in the workspace.
            (PCGRAD_ERROR_OVERLAP, &|a| a.mtab[0] = a.gtab[3]),
            (PCGRAD_ERROR_OVERLAP, &|a| {
                a.mtab[1] = a.mtab[0].wrapping_add(4)
            }),
            (PCGRAD_ERROR_OVERLAP, &|a| a.matrix = a.ws.wrapping_add(3)),
            (PCGRAD_ERROR_OVERLAP, &|a| {
                a.stats = a.ws.wrapping_add(9).cast()
            }),
            (PCGRAD_ERROR_OVERLAP, &|a| a.cfg.rng = a.ws.cast()),
        );
        // NaN / Inf with check_finite = 1.
        for x in [f32::NAN, f32::INFINITY] {
            let mut fx = VarsFx::new(t, M::Shuffled, 0);
            fx.cells[4][0] = x;
            fx.cfg.check_finite = 1;
            fails(&mut fx, PCGRAD_ERROR_NON_FINITE, call, |_| {});
        }
        let mut fx = VarsFx::new(t, M::Fixed, 0);
        if project {
            // Two gradient cells on one buffer: both are outputs.
            fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
                a.gtab[3] = a.gtab[0]
            });
            // The pointer table itself inside an output buffer.
            // The pointer table itself lying in an output buffer (its
            // own cell 0, as if the caller reused the memory).
            let mut tab: Vec<*mut f32> = vec![ptr::null_mut(); t * S];
            fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
                tab.copy_from_slice(&a.gtab);
                tab[0] = tab.as_mut_ptr().cast();
                a.grads = Some(tab.as_ptr());
            });
            // `merged` is optional for project: NULL with length 0 ...
            let mut a = fx.args();
            (a.merged, a.merged_len) = (Some(ptr::null()), 0);
            assert_eq!(call(&a), PCGRAD_OK);
            // ... but not with S entries.
            let mut fx = VarsFx::new(t, M::Fixed, 0);
            fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
                a.merged = Some(ptr::null())
            });
        } else {
            // Read-only gradients may share a buffer.
            let mut a = fx.args();
            a.gtab[3] = a.gtab[0];
            assert_eq!(call(&a), PCGRAD_OK);
            let mut fx = VarsFx::new(t, M::Fixed, 0);
            fails(&mut fx, PCGRAD_ERROR_NULL_POINTER, call, |a| {
                (a.merged, a.merged_len) = (Some(ptr::null()), 0)
            });
        }
    }
}

#[test]
fn phases_refuse_bad_input() {
    let t = 3;
    type Call = fn(&PhArgs) -> pcgrad_status;
    let (gram, combine, coefs): (Call, Call, Call) =
        (PhArgs::gram_flat, PhArgs::combine, PhArgs::coefficients);
    let (merged, projected): (Call, Call) = (PhArgs::apply_merged, PhArgs::apply_projected);
    config_failures(
        |m| PhFx::new(t, m),
        coefs,
        |a| &mut a.cfg,
        |a| &mut a.config,
    );
    let mut fx = PhFx::new(t, M::Shuffled);
    // Arguments shared by phase 1 and phase 3.
    for call in [gram, merged, projected] {
        cases!(fx, call;
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.grads = ptr::null_mut()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.segments = ptr::null()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.has_grad = ptr::null()),
            (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.grads_len += 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.has_grad_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.segments_len = 2),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.dim = usize::MAX),
            (PCGRAD_ERROR_OVERFLOW, &|a| a.grads_len = usize::MAX),
            (PCGRAD_ERROR_INVALID_RANGE, &|a| (a.lo, a.hi) = (5, 4)),
            (PCGRAD_ERROR_INVALID_RANGE, &|a| {
                (a.lo, a.hi) = (usize::MAX, 0)
            }),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.grads = mis_mut(a.grads)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.segments = mis(a.segments)),
        );
        fx.hg[1] = 2;
        fails(&mut fx, PCGRAD_ERROR_INVALID_ENUM, call, |_| {});
        fx.hg[1] = 1;
    }
    // Phase 1.
    cases!(fx, gram;
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.gram = ptr::null_mut()),
        (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.gram_len -= 1),
        (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.gram_len = t * t),
        (PCGRAD_ERROR_MISALIGNED, &|a| a.gram = mis_mut(a.gram)),
        (PCGRAD_ERROR_INVALID_RANGE, &|a| a.hi = N + 1),
    );
    // The Gram over the gradients (an f64-aligned arena holds both).
    let mut arena = vec![0.0f64; t * N + 2 * t * t];
    fails(&mut fx, PCGRAD_ERROR_OVERLAP, gram, |a| {
        a.grads = arena.as_mut_ptr().cast();
        a.gram = arena.as_mut_ptr().wrapping_add(t * N / 2 - 1);
    });
    // Combine.
    cases!(fx, combine;
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.partial = ptr::null()),
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.gram = ptr::null_mut()),
        (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
        (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.partial_len = t * t - 1),
        (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.gram_len = t * t - 1),
        (PCGRAD_ERROR_OVERFLOW, &|a| a.tasks = usize::MAX),
        (PCGRAD_ERROR_OVERFLOW, &|a| a.partial_len = usize::MAX),
        (PCGRAD_ERROR_MISALIGNED, &|a| a.partial = mis(a.partial)),
        (PCGRAD_ERROR_MISALIGNED, &|a| a.gram = mis_mut(a.gram)),
        (PCGRAD_ERROR_OVERLAP, &|a| {
            a.partial = a.gram.wrapping_add(t * t)
        }),
    );
    // Phase 2.
    cases!(fx, coefs;
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.gram = ptr::null_mut()),
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.coef = ptr::null_mut()),
        (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
        (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.gram_len = t * t - 1),
        (PCGRAD_ERROR_OVERFLOW, &|a| a.tasks = usize::MAX),
        (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.coef_len -= 1),
        (PCGRAD_ERROR_MISALIGNED, &|a| a.gram = mis_mut(a.gram)),
        (PCGRAD_ERROR_MISALIGNED, &|a| a.coef = mis_mut(a.coef)),
        (PCGRAD_ERROR_MISALIGNED, &|a| a.stats = mis_mut(a.stats)),
        (PCGRAD_ERROR_OVERLAP, &|a| a.coef = a.gram.wrapping_add(2)),
        (PCGRAD_ERROR_OVERLAP, &|a| a.stats = a.coef.cast()),
        (PCGRAD_ERROR_OVERLAP, &|a| a.cfg.rng = a.gram.cast()),
        (PCGRAD_ERROR_OVERLAP, &|a| {
            a.cfg.rng = a.coef.wrapping_add(1).cast()
        }),
    );
    for x in [f64::NAN, f64::INFINITY] {
        let mut fx = PhFx::new(t, M::Shuffled);
        fx.gram[t + 1] = x;
        fx.cfg.check_finite = 1;
        fails(&mut fx, PCGRAD_ERROR_NON_FINITE, coefs, |_| {});
    }
    // Phase 3.
    for (call, project) in [(merged, false), (projected, true)] {
        let mut fx = PhFx::new(t, M::Fixed);
        cases!(fx, call;
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.coef = ptr::null_mut()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.tile = ptr::null_mut()),
            (PCGRAD_ERROR_NULL_POINTER, &|a| a.merged = ptr::null_mut()),
            (PCGRAD_ERROR_INVALID_ENUM, &|a| a.reduction = 2),
            (PCGRAD_ERROR_INVALID_ENUM, &|a| a.reduction = u32::MAX),
            (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.coef_len -= 1),
            (PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a| a.tile_len -= 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.merged_len += 1),
            (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.merged_len -= 1),
            (PCGRAD_ERROR_INVALID_RANGE, &|a| {
                (a.hi, a.merged_len) = (N + 1, N - 1)
            }),
            (PCGRAD_ERROR_INVALID_RANGE, &|a| {
                (a.lo, a.hi, a.merged_len) = (3, 2, 0)
            }),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.coef = mis_mut(a.coef)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.merged = mis_mut(a.merged)),
            (PCGRAD_ERROR_MISALIGNED, &|a| a.tile = mis_mut(a.tile)),
            (PCGRAD_ERROR_OVERLAP, &|a| {
                a.merged = a.grads.wrapping_add(N)
            }),
            (PCGRAD_ERROR_OVERLAP, &|a| a.tile = a.coef.wrapping_add(1)),
        );
        // The merged output may be absent only for the projected pass.
        let mut a = fx.args();
        (a.merged, a.merged_len) = (ptr::null_mut(), 0);
        let want = if project {
            PCGRAD_OK
        } else {
            PCGRAD_ERROR_NULL_POINTER
        };
        assert_eq!(call(&a), want);
        if project {
            let mut fx = PhFx::new(t, M::Fixed);
            let mut arena = vec![0.0f64; t * N + engine::tile_len(t).unwrap()];
            // The tile over the in-place gradients.
            fails(&mut fx, PCGRAD_ERROR_OVERLAP, call, |a| {
                a.grads = arena.as_mut_ptr().cast();
                a.tile = arena.as_mut_ptr().wrapping_add(1);
            });
        }
    }
    // Coefficients for another T are refused by the apply phases.
    let mut fx = PhFx::new(t, M::Fixed);
    let mut other = PhFx::new(2, M::Fixed);
    let mut a = other.args();
    a.coef_len = 2 * 2 + 2 * 2;
    let c = a.coef;
    fails(&mut fx, PCGRAD_ERROR_WORKSPACE_TOO_SMALL, merged, |a| {
        (a.coef, a.coef_len) = (c, 8)
    });
}

#[test]
fn pack_and_unflatten_refuse_bad_input() {
    let t = 3;
    let call = PackArgs::pack;
    let mut fx = PackFx::new(t);
    let huge = [usize::MAX, 1, 1];
    cases!(fx, call;
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.vars = Some(ptr::null())),
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.segments = ptr::null()),
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.out = ptr::null_mut()),
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.has_grad = ptr::null_mut()),
        (PCGRAD_ERROR_NO_TASKS, &|a| a.tasks = 0),
        (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.vars_len -= 1),
        (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.out_len -= 1),
        (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.has_grad_len -= 1),
        (PCGRAD_ERROR_OVERFLOW, &|a| a.segments = huge.as_ptr()),
        (PCGRAD_ERROR_OVERFLOW, &|a| a.tasks = usize::MAX),
        (PCGRAD_ERROR_OVERFLOW, &|a| a.out_len = usize::MAX),
        (PCGRAD_ERROR_MISALIGNED, &|a| {
            a.vars = Some(mis(a.vtab.as_ptr()))
        }),
        (PCGRAD_ERROR_MISALIGNED, &|a| a.vtab[0] = mis(a.vtab[0])),
        (PCGRAD_ERROR_MISALIGNED, &|a| a.segments = mis(a.segments)),
        (PCGRAD_ERROR_MISALIGNED, &|a| a.out = mis_mut(a.out)),
        (PCGRAD_ERROR_OVERLAP, &|a| a.has_grad = a.out.cast()),
        (PCGRAD_ERROR_OVERLAP, &|a| {
            a.vtab[4] = a.out.wrapping_add(N).cast_const()
        }),
    );
    let call = UnArgs::unflatten;
    let mut fx = UnFx::new();
    cases!(fx, call;
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.flat = ptr::null()),
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.segments = ptr::null()),
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.outs = Some(ptr::null())),
        (PCGRAD_ERROR_NULL_POINTER, &|a| a.otab[2] = ptr::null_mut()),
        (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.flat_len -= 1),
        (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.outs_len -= 1),
        (PCGRAD_ERROR_LENGTH_MISMATCH, &|a| a.segments_len -= 1),
        (PCGRAD_ERROR_OVERFLOW, &|a| a.segments = huge.as_ptr()),
        (PCGRAD_ERROR_OVERFLOW, &|a| a.flat_len = usize::MAX),
        (PCGRAD_ERROR_MISALIGNED, &|a| a.flat = mis(a.flat)),
        (PCGRAD_ERROR_MISALIGNED, &|a| {
            a.outs = Some(mis(a.otab.as_ptr()))
        }),
        (PCGRAD_ERROR_MISALIGNED, &|a| a.otab[1] = mis_mut(a.otab[1])),
        (PCGRAD_ERROR_OVERLAP, &|a| {
            a.otab[0] = a.flat.wrapping_add(3).cast_mut()
        }),
        (PCGRAD_ERROR_OVERLAP, &|a| {
            a.otab[1] = a.otab[2].wrapping_add(6)
        }),
    );
}

/// The sorted overlap check against the definition (every output disjoint
/// from every other buffer), over random span lists with shared ends,
/// nesting, empty and NULL spans.
#[test]
fn sorted_overlap_check_equals_the_pairwise_definition() {
    use super::super::check::{disjoint, disjoint_unstored, Span};
    let mut rng = Rng::new(SEED);
    let mut draw = |k: u64| (rng.next_u64() % k) as usize;
    // Fewer cases under Miri, which runs these tests slowly.
    let cases = if cfg!(miri) { 200 } else { 4000 };
    for case in 0..cases {
        // Mostly short lists; every 50th more than the 64-span chunk of
        // `disjoint_unstored`, in any address order, mostly disjoint.
        let big = case % 50 == 0;
        let n = if big { 150 + draw(50) } else { 1 + draw(12) };
        let outs_n = if big { 130 } else { draw(n as u64 + 1) };
        // (address, length) in bytes; address 0 is NULL.
        let raw: Vec<(usize, usize)> = (0..n)
            .map(|_| match big {
                true => (
                    16 * (1 + draw(40000)),
                    1 + draw(if case % 100 == 0 { 17 } else { 16 }),
                ),
                false => (draw(4) * (1 + draw(40)), draw(12)),
            })
            .collect();
        let spans: Vec<Span> = raw
            .iter()
            .map(|&(a, l)| Span::of(ptr::without_provenance::<u8>(a), l))
            .collect();
        let hit = |a: (usize, usize), b: (usize, usize)| {
            a.0 != 0 && b.0 != 0 && a.1 > 0 && b.1 > 0 && a.0 < b.0 + b.1 && b.0 < a.0 + a.1
        };
        let want = (0..outs_n).any(|k| (0..n).any(|j| j != k && hit(raw[k], raw[j])));
        let want = if want { Err(Error::Overlap) } else { Ok(()) };
        let mut outs = spans[..outs_n].to_vec();
        let got = disjoint(&mut outs, &mut spans[outs_n..].iter().copied());
        assert_eq!(got, want, "{raw:?}, {outs_n} outputs");
        let unstored = disjoint_unstored(|| spans[..outs_n].iter().copied(), &spans[outs_n..]);
        assert_eq!(unstored, want, "{raw:?}, {outs_n} outputs (unstored)");
    }
}

/// `pcgrad_coefficients` with `check_finite` checks every entry of the
/// caller's Gram matrix, not only its diagonal.
#[test]
fn coefficients_check_every_gram_entry() {
    let t = 3;
    let mut cl = 0;
    // SAFETY: `cl` is a live, aligned `usize`.
    assert_eq!(unsafe { pcgrad_coefficients_len(t, &mut cl) }, PCGRAD_OK);
    let gram = [4.0, -1.0, 0.5, -1.0, 2.0, 0.25, 0.5, 0.25, 1.0];
    for (k, bad) in [(1, f64::NEG_INFINITY), (5, f64::NAN), (6, f64::INFINITY)] {
        for check in [0, 1] {
            let mut g = gram;
            g[k] = bad;
            let mut cfg = default_config();
            cfg.check_finite = check;
            let mut coef = vec![SENT64; cl];
            let mut stats = STATS_SENT;
            // SAFETY: every pointer points at a live buffer of its length.
            let st = unsafe {
                pcgrad_coefficients(&cfg, g.as_ptr(), 9, t, &mut stats, coef.as_mut_ptr(), cl)
            };
            if check == 1 {
                assert_eq!(st, PCGRAD_ERROR_NON_FINITE, "entry {k} = {bad}");
                assert_eq!(bits64(&coef), bits64(&vec![SENT64; cl]));
                assert_eq!(stats, STATS_SENT);
            } else {
                assert_eq!(st, PCGRAD_OK, "unchecked, entry {k} = {bad}");
            }
        }
    }
}

/// Lengths before contents: a has_grad mask one byte too long is a length
/// error whatever the extra byte holds.
#[test]
fn mask_length_is_checked_before_its_bytes() {
    for extra in [0u8, 1, 7, 255] {
        let mut fx = FlatFx::new(3, true, M::Fixed, PCGRAD_REDUCTION_SUM);
        let mut hg = fx.hg.clone();
        hg.push(extra);
        let before = fx.merged.clone();
        let mut a = fx.args();
        a.has_grad = hg.as_ptr();
        a.has_grad_len = hg.len();
        assert_eq!(
            a.merge(),
            PCGRAD_ERROR_LENGTH_MISMATCH,
            "extra byte {extra}"
        );
        assert_eq!(
            a.project(),
            PCGRAD_ERROR_LENGTH_MISMATCH,
            "extra byte {extra}"
        );
        assert_eq!(bits32(&fx.merged), bits32(&before));
        // A mask of the right length with a byte out of range is an enum
        // error.
        let mut a = fx.args();
        hg.pop();
        hg[0] = 7;
        a.has_grad = hg.as_ptr();
        assert_eq!(a.merge(), PCGRAD_ERROR_INVALID_ENUM);
    }
}

/// One rule for every optional buffer: length 0 is absent, whatever the
/// pointer (here the diagnostic matrix, as has_grad and segments already
/// were); NULL with a non-zero length is a NULL pointer.
#[test]
fn optional_buffers_of_length_zero_are_absent() {
    let t = 3;
    let mut fx = FlatFx::new(t, true, M::Fixed, PCGRAD_REDUCTION_MEAN);
    let mut a = fx.args();
    a.matrix = ptr::null_mut();
    a.matrix_len = 0;
    assert_eq!(a.merge(), PCGRAD_OK);
    let want = fx.merged.clone();
    let mut fx = FlatFx::new(t, true, M::Fixed, PCGRAD_REDUCTION_MEAN);
    let mut a = fx.args();
    a.matrix_len = 0;
    assert_eq!(a.merge(), PCGRAD_OK);
    assert_eq!(bits32(&fx.merged), bits32(&want));
    assert_eq!(bits64(&fx.matrix), bits64(&vec![SENT64; t * t]));
    // Misaligned but of length 0: absent, not read.
    let mut a = fx.args();
    a.matrix = mis_mut(a.matrix);
    a.matrix_len = 0;
    a.has_grad = mis(a.has_grad).wrapping_add(1);
    a.has_grad_len = 0;
    assert_eq!(a.merge(), PCGRAD_OK);
    let mut a = fx.args();
    a.matrix = ptr::null_mut();
    assert_eq!(a.merge(), PCGRAD_ERROR_NULL_POINTER);
}
