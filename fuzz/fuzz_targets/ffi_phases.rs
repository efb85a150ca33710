//! The three phases over random shard splits: `pcgrad_gram_flat` per Gram
//! shard into its own zeroed partial, `pcgrad_gram_combine` in shard order,
//! `pcgrad_coefficients`, then `pcgrad_apply_merged_flat` or
//! `pcgrad_apply_projected_flat` per apply shard (other cuts than the Gram
//! shards'). Before a phase call the input may first make a broken copy of
//! it (a range inverted or past N, a short buffer, a NULL or misaligned
//! pointer, an out-of-range reduction), which must fail and leave every
//! byte but the scratch tile as it was.
//!
//! Checked: every valid call succeeds; guard regions and inputs are never
//! written; with one Gram shard the result equals the one-call
//! `pcgrad_merge_flat` / `pcgrad_project_flat` bitwise (the apply pass
//! computes each coordinate alone, so its cuts do not matter); with
//! several it matches the float64 reference.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pcgrad_fuzz::*;

fuzz_target!(|data: &[u8]| run(data));

fn cuts(b: &mut Bytes, n: usize) -> Vec<usize> {
    let mut c: Vec<usize> = (0..b.below(4)).map(|_| b.below(n + 1)).collect();
    c.push(0);
    c.push(n);
    c.sort_unstable();
    c
}

fn len_of(f: unsafe extern "C" fn(usize, *mut usize) -> pcgrad_status, t: usize) -> usize {
    let mut v = 0;
    // SAFETY: `v` is a valid out pointer.
    assert_eq!(unsafe { f(t, &mut v) }, pcgrad_status::PCGRAD_OK);
    v
}

/// A phase call's arguments that a broken copy may change.
#[derive(Clone, Copy)]
struct Args {
    lo: usize,
    hi: usize,
    len: usize,
    len2: usize,
    null: bool,
    misaligned: bool,
    reduction: u32,
}

/// Breaks one argument of `a`; returns false when nothing was broken.
fn broken(b: &mut Bytes, a: &mut Args, n: usize) -> bool {
    if !b.chance(6) {
        return false;
    }
    match b.u8() % 7 {
        0 if a.lo < a.hi => std::mem::swap(&mut a.lo, &mut a.hi),
        1 => a.hi = n + 1 + b.below(3),
        2 if a.len > 0 => a.len -= 1,
        3 if a.len2 > 0 => a.len2 -= 1,
        4 => a.null = true,
        5 => a.misaligned = true,
        6 => a.reduction = 2 + b.u8() as u32,
        _ => return false,
    }
    true
}

fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let (sh, g) = problem_input(&mut b, 10, 300);
    let project = b.bool();
    let (t, n) = (sh.tasks, sh.dim);
    let mut cfg = CfgChoice::draw(&mut b, t);
    let gram_cuts = cuts(&mut b, n);
    let apply_cuts = cuts(&mut b, n);
    let segs = if sh.segments.is_empty() {
        vec![n]
    } else {
        sh.segments.clone()
    };
    let mask: Vec<u8> = if sh.has_grad.is_empty() {
        vec![1; t * segs.len()]
    } else {
        sh.has_grad.iter().map(|&h| h as u8).collect()
    };
    let gl = len_of(pcgrad_gram_len, t);
    let cl = len_of(pcgrad_coefficients_len, t);
    let tl = len_of(pcgrad_tile_len, t);
    let wl = len_of(pcgrad_workspace_len, t);

    let mut arena = Arena::new();
    cfg.plan(&mut arena);
    let grads_buf = arena.alloc(4 * t * n);
    let seg_buf = arena.alloc(8 * segs.len());
    let mask_buf = arena.alloc(mask.len());
    let partial_buf = arena.alloc(8 * gl);
    let gram_buf = arena.alloc(8 * gl);
    let coef_buf = arena.alloc(8 * cl);
    let tile_buf = arena.alloc(8 * tl);
    let merged_buf = arena.alloc(4 * n);
    let stats_buf = arena.alloc(16);
    // The one-call reference run.
    let one_grads = arena.alloc(4 * t * n);
    let one_merged = arena.alloc(4 * n);
    let ws_buf = arena.alloc(8 * wl);
    arena.finish();
    let config = cfg.place(&mut arena);
    arena.write(grads_buf, &g);
    arena.write(one_grads, &g);
    arena.write(seg_buf, &segs);
    arena.write(mask_buf, &mask);
    arena.write(gram_buf, &vec![0.0f64; gl]);
    let gp: *mut f32 = arena.ptr(grads_buf, 0);
    let sp: *const usize = arena.ptr(seg_buf, 0);
    let hp: *const u8 = arena.ptr(mask_buf, 0);
    let partial: *mut f64 = arena.ptr(partial_buf, 0);
    let gram: *mut f64 = arena.ptr(gram_buf, 0);
    let coef: *mut f64 = arena.ptr(coef_buf, 0);
    let tile: *mut f64 = arena.ptr(tile_buf, 0);
    let mp: *mut f32 = arena.ptr(merged_buf, 0);
    let stp: *mut pcgrad_stats = arena.ptr(stats_buf, 0);
    let (sl, ml) = (segs.len(), mask.len());
    let ok = pcgrad_status::PCGRAD_OK;
    let fail_unchanged = |arena: &Arena, before: &[u8], st: pcgrad_status, what: &str| {
        assert_ne!(st, ok, "{what}: a broken call succeeded");
        arena.assert_unchanged(before, &[arena.span(tile_buf)], what);
    };
    let bad_ptr = |a: &Args, p: *mut f64| -> *mut f64 {
        if a.null {
            core::ptr::null_mut()
        } else if a.misaligned {
            p.cast::<u8>().wrapping_add(4).cast()
        } else {
            p
        }
    };

    // Phase 1, one partial per shard, combined in shard order.
    for w in gram_cuts.windows(2) {
        arena.write(partial_buf, &vec![0.0f64; gl]);
        let mut a = Args {
            lo: w[0],
            hi: w[1],
            len: gl,
            len2: 0,
            null: false,
            misaligned: false,
            reduction: 0,
        };
        if broken(&mut b, &mut a, n) && a.reduction == 0 {
            let before = arena.snapshot();
            // SAFETY: pointers into the arena with room for their lengths,
            // or NULL / misaligned (refused).
            let st = unsafe {
                pcgrad_gram_flat(
                    gp,
                    t * n,
                    sp,
                    sl,
                    hp,
                    ml,
                    t,
                    n,
                    a.lo,
                    a.hi,
                    bad_ptr(&a, partial),
                    a.len,
                )
            };
            fail_unchanged(&arena, &before, st, "pcgrad_gram_flat");
        }
        let before = arena.snapshot();
        // SAFETY: as above, every argument valid.
        let st =
            unsafe { pcgrad_gram_flat(gp, t * n, sp, sl, hp, ml, t, n, w[0], w[1], partial, gl) };
        assert_eq!(st, ok, "pcgrad_gram_flat on a valid shard");
        arena.assert_unchanged(&before, &[arena.span(partial_buf)], "pcgrad_gram_flat");
        let mut a = Args {
            lo: 0,
            hi: 0,
            len: t * t,
            len2: t * t,
            null: false,
            misaligned: false,
            reduction: 0,
        };
        if broken(&mut b, &mut a, n) && (a.len < t * t || a.len2 < t * t || a.null || a.misaligned)
        {
            let before = arena.snapshot();
            // SAFETY: as above.
            let st = unsafe { pcgrad_gram_combine(partial, a.len, t, bad_ptr(&a, gram), a.len2) };
            fail_unchanged(&arena, &before, st, "pcgrad_gram_combine");
        }
        let before = arena.snapshot();
        // SAFETY: both hold at least T * T doubles, disjoint.
        let st = unsafe { pcgrad_gram_combine(partial, gl, t, gram, gl) };
        assert_eq!(st, ok, "pcgrad_gram_combine");
        arena.assert_unchanged(&before, &[arena.span(gram_buf)], "pcgrad_gram_combine");
    }

    // Phase 2.
    let mut a = Args {
        lo: 0,
        hi: 0,
        len: t * t,
        len2: cl,
        null: false,
        misaligned: false,
        reduction: 0,
    };
    if broken(&mut b, &mut a, n) && (a.len < t * t || a.len2 < cl || a.null || a.misaligned) {
        let before = arena.snapshot();
        // SAFETY: as above.
        let st =
            unsafe { pcgrad_coefficients(config, gram, a.len, t, stp, bad_ptr(&a, coef), a.len2) };
        fail_unchanged(&arena, &before, st, "pcgrad_coefficients");
    }
    let before = arena.snapshot();
    // SAFETY: as above.
    let st = unsafe { pcgrad_coefficients(config, gram, gl, t, stp, coef, cl) };
    let gram_now = arena.read::<f64>(gram_buf, t * t);
    let nonfinite = cfg.check_finite == 1 && (0..t).any(|i| !gram_now[i * t + i].is_finite());
    check_status(st, cfg.valid, nonfinite, "pcgrad_coefficients");
    if st != ok {
        arena.assert_unchanged(&before, &[], "pcgrad_coefficients");
        return;
    }
    arena.assert_unchanged(
        &before,
        &[
            arena.span(coef_buf),
            arena.span(stats_buf),
            cfg.rng_span(&arena),
        ],
        "pcgrad_coefficients",
    );
    let e = Expect::new(&sh, &g, &cfg.orders, cfg.mean());
    cfg.check_rng(&mut arena, e.rng_after);
    let stats = arena.read::<pcgrad_stats>(stats_buf, 1)[0];
    e.check_stats(t, stats.conflicting_pairs, stats.projections);

    // Phase 3, per apply shard.
    let red = cfg.reduction;
    for w in apply_cuts.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        // SAFETY: `lo` <= N floats into the merged buffer.
        let out = unsafe { mp.add(lo) };
        let mut a = Args {
            lo,
            hi,
            len: hi - lo,
            len2: tl,
            null: false,
            misaligned: false,
            reduction: red,
        };
        // The projecting call's `merged` is optional: cut to length 0
        // (and nothing else broken) it is absent, a valid call.
        let mut absent_projection = None;
        if broken(&mut b, &mut a, n) {
            let absent = project
                && a.len == 0
                && (a.lo, a.hi, a.len2, a.null, a.misaligned, a.reduction)
                    == (lo, hi, tl, false, false, red);
            let saved = arena.read::<f32>(grads_buf, t * n);
            let before = arena.snapshot();
            let tp = bad_ptr(&a, tile);
            // SAFETY: as above; a length never exceeds its buffer.
            let st = unsafe {
                if project {
                    pcgrad_apply_projected_flat(
                        gp,
                        t * n,
                        sp,
                        sl,
                        hp,
                        ml,
                        coef,
                        cl,
                        t,
                        n,
                        a.reduction,
                        a.lo,
                        a.hi,
                        out,
                        a.len,
                        tp,
                        a.len2,
                    )
                } else {
                    pcgrad_apply_merged_flat(
                        gp,
                        t * n,
                        sp,
                        sl,
                        hp,
                        ml,
                        coef,
                        cl,
                        t,
                        n,
                        a.reduction,
                        a.lo,
                        a.hi,
                        out,
                        a.len,
                        tp,
                        a.len2,
                    )
                }
            };
            if absent {
                // It projects as the call with `merged` below does, and
                // writes nothing else; the columns are then restored for
                // that call.
                assert_eq!(st, ok, "phase 3 with merged absent (length 0)");
                let allowed = [arena.span(tile_buf), arena.span(grads_buf)];
                arena.assert_unchanged(&before, &allowed, "phase 3, merged absent");
                absent_projection = Some(arena.read::<f32>(grads_buf, t * n));
                arena.write(grads_buf, &saved);
            } else {
                fail_unchanged(&arena, &before, st, "phase 3 (broken)");
            }
        }
        let before = arena.snapshot();
        // SAFETY: every argument valid.
        let st = unsafe {
            if project {
                pcgrad_apply_projected_flat(
                    gp,
                    t * n,
                    sp,
                    sl,
                    hp,
                    ml,
                    coef,
                    cl,
                    t,
                    n,
                    red,
                    lo,
                    hi,
                    out,
                    hi - lo,
                    tile,
                    tl,
                )
            } else {
                pcgrad_apply_merged_flat(
                    gp,
                    t * n,
                    sp,
                    sl,
                    hp,
                    ml,
                    coef,
                    cl,
                    t,
                    n,
                    red,
                    lo,
                    hi,
                    out,
                    hi - lo,
                    tile,
                    tl,
                )
            }
        };
        assert_eq!(st, ok, "phase 3 on a valid shard");
        let mut allowed = vec![arena.span(tile_buf), arena.span(merged_buf)];
        if project {
            allowed.push(arena.span(grads_buf));
        }
        arena.assert_unchanged(&before, &allowed, "phase 3");
        if let Some(want) = absent_projection {
            // Bitwise, every NaN as one value (its payload is not promised).
            let got = arena.read::<f32>(grads_buf, t * n);
            let bits = |v: &[f32]| -> Vec<u32> {
                v.iter()
                    .map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() })
                    .collect()
            };
            assert_eq!(bits(&got), bits(&want), "phase 3: merged absent vs present");
        }
    }
    let merged = arena.read::<f32>(merged_buf, n);
    let projected = arena.read::<f32>(grads_buf, t * n);
    if gram_cuts.len() == 2 {
        // One Gram shard: bitwise the one-call result.
        // The same config and PRNG state as the phases started from.
        let config = cfg.place(&mut arena);
        let (og, om, ws): (*mut f32, *mut f32, *mut f64) = (
            arena.ptr(one_grads, 0),
            arena.ptr(one_merged, 0),
            arena.ptr(ws_buf, 0),
        );
        // SAFETY: every argument valid.
        let st = unsafe {
            if project {
                pcgrad_project_flat(
                    config,
                    og,
                    t * n,
                    sp,
                    sl,
                    hp,
                    ml,
                    t,
                    n,
                    om,
                    n,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    0,
                    ws,
                    wl,
                )
            } else {
                pcgrad_merge_flat(
                    config,
                    og,
                    t * n,
                    sp,
                    sl,
                    hp,
                    ml,
                    t,
                    n,
                    om,
                    n,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    0,
                    ws,
                    wl,
                )
            }
        };
        assert_eq!(st, ok, "the one-call run");
        // NaN compares as NaN whatever its sign and payload (which the two
        // paths need not propagate alike).
        let bits = |v: Vec<f32>| {
            v.into_iter()
                .map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            bits(arena.read::<f32>(one_merged, n)),
            bits(merged.clone()),
            "phases vs one call: merged"
        );
        if project {
            assert_eq!(
                bits(arena.read::<f32>(one_grads, t * n)),
                bits(projected.clone()),
                "phases vs one call: projected"
            );
        }
    }
    e.check("phases merged", &merged, &e.r.merged, &all(n), !project);
    if project {
        e.check(
            "phases projected",
            &projected,
            &e.r.projected,
            &all(t * n),
            false,
        );
    }
}
