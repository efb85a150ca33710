//! `pcgrad_merge_flat` and `pcgrad_project_flat` with every argument chosen
//! by the input: shape, segments, mask, values (NaN/Inf among them), every
//! config field (out-of-range values too), NULL, misaligned and overlapping
//! pointers, lengths one off either way, short and long workspaces, T * N
//! that overflows. Every buffer sits between guard regions.
//!
//! Checked: an invalid call fails and leaves every byte but the workspace
//! as it was; a valid one succeeds (or reports a non-finite input under
//! `check_finite`), writes only its outputs, and matches the float64
//! reference within 1e-5 of the largest input (see `MERGED_PATH_MAX_ABS`
//! for the merged path).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pcgrad_fuzz::*;

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let (sh, g) = problem_input(&mut b, 16, 1100);
    let project = b.bool();
    let (t, n) = (sh.tasks, sh.dim);
    let s = sh.num_segments();
    let mut cfg = CfgChoice::draw(&mut b, t);
    let mut valid = cfg.valid;

    // Shape arguments.
    let mut tasks = t;
    let mut dim = n;
    if b.chance(30) {
        valid = false;
        if b.bool() {
            tasks = 0;
        } else {
            // T * N wraps around to the buffer's length.
            dim = n.wrapping_add((usize::MAX / t.max(2)).wrapping_add(1));
            if t.checked_mul(dim).is_some() {
                tasks = 0;
            }
        }
    }

    let mut arena = Arena::new();
    cfg.plan(&mut arena);
    let grads_buf = arena.alloc(4 * t * n);
    let (grads_len, bad) = mutate_len(&mut b, t * n);
    valid &= !bad;

    // Segments: absent, or S lengths (one sometimes off by one).
    let explicit_segments = !sh.segments.is_empty() || b.chance(4);
    let mut segs = if sh.segments.is_empty() {
        vec![n]
    } else {
        sh.segments.clone()
    };
    if explicit_segments && b.chance(10) {
        let k = b.below(segs.len());
        segs[k] += 1;
        valid = false;
    }
    let seg_buf = arena.alloc(8 * segs.len());
    let seg_ptr = if !explicit_segments {
        Ptr::Null
    } else if b.chance(20) {
        valid = false;
        if b.bool() {
            Ptr::Null
        } else {
            Ptr::Misaligned(1 + b.below(7))
        }
    } else {
        Ptr::Own
    };
    let seg_len = if explicit_segments { segs.len() } else { 0 };

    // The mask: absent, or T x S bytes (one sometimes neither 0 nor 1).
    let mut mask: Vec<u8> = if sh.has_grad.is_empty() {
        vec![1; t * s]
    } else {
        sh.has_grad.iter().map(|&h| h as u8).collect()
    };
    let explicit_mask = !sh.has_grad.is_empty() || b.chance(4);
    let mut mask_corrupt = false;
    if explicit_mask && !mask.is_empty() && b.chance(10) {
        let k = b.below(mask.len());
        mask[k] = 2 + b.u8() % 254;
        mask_corrupt = true;
    }
    let mask_buf = arena.alloc(mask.len());
    let (mask_len, mut mask_ptr) = if explicit_mask {
        let (len, bad) = mutate_len(&mut b, mask.len());
        // An empty mask is a valid "all present" (its bytes, valid or
        // not, are then not read).
        valid &= !bad || len == 0;
        (len.min(mask.len() + 1), Ptr::Own)
    } else {
        (0, Ptr::Null)
    };
    if mask_len > 0 && b.chance(30) {
        mask_ptr = Ptr::Null;
        valid = false;
    }
    valid &= !(mask_corrupt && mask_len > 0);
    // What the call sees: no mask when its length is 0.
    let mut sh = sh;
    if mask_len == 0 {
        sh.has_grad.clear();
    }

    // Outputs.
    let merged_buf = arena.alloc(4 * n);
    let (merged_len, bad) = mutate_len(&mut b, n);
    let want_merged = !project || b.bool();
    let merged_len = if want_merged { merged_len } else { 0 };
    // An optional buffer of length 0 is absent whatever its pointer (the
    // header's rule): only the projecting call's `merged` is optional.
    let merged_absent = project && merged_len == 0;
    valid &= !(want_merged && bad && !merged_absent);
    let stats_buf = arena.alloc(core::mem::size_of::<pcgrad_stats>());
    let want_stats = b.bool();
    let matrix_buf = arena.alloc(8 * t * t);
    let want_matrix = b.bool();
    let (matrix_len, bad) = mutate_len(&mut b, t * t);
    let matrix_len = if want_matrix { matrix_len } else { 0 };
    // Length 0: absent (see `merged_absent`).
    valid &= !(want_matrix && bad && matrix_len > 0);
    let ws_need = {
        let mut w = 0usize;
        // SAFETY: `w` is a valid out pointer.
        let st = unsafe { pcgrad_workspace_len(t, &mut w) };
        assert_eq!(st, pcgrad_status::PCGRAD_OK);
        w
    };
    let ws_len = if !b.chance(8) {
        ws_need
    } else if b.bool() {
        ws_need + 1 + b.below(64)
    } else {
        valid = false;
        ws_need - 1 - b.below(ws_need)
    };
    let ws_buf = arena.alloc(8 * ws_len);
    arena.finish();

    // Pointer mutations of the outputs (and of `grads` when in place):
    // moved into a buffer the call reads or writes, they must be refused.
    let (cfg_buf, table_buf, _) = cfg.bufs.unwrap();
    let mut others = vec![cfg_buf, grads_buf, ws_buf];
    if cfg.uses_table() && cfg.table_ptr == Ptr::Own && cfg.table_len > 0 {
        others.push(table_buf);
    }
    if seg_ptr == Ptr::Own {
        others.push(seg_buf);
    }
    if mask_ptr == Ptr::Own && mask_len > 0 {
        others.push(mask_buf);
    }
    if want_merged {
        others.push(merged_buf);
    }
    if want_stats {
        others.push(stats_buf);
    }
    if want_matrix {
        others.push(matrix_buf);
    }
    let mut bad_ptr = false;
    let mut pick = |b: &mut Bytes, own: Buf, bytes: usize, align: usize, null_refused: bool| {
        let o: Vec<Buf> = others.iter().copied().filter(|&x| x != own).collect();
        let (p, bad) = mutate_ptr(b, &arena, bytes, align, null_refused, &o);
        // An optional buffer of length 0 is absent whatever its pointer
        // (the header's rule), misaligned included.
        let absent = bytes == 0 && !null_refused;
        bad_ptr |= bad && !(absent && matches!(p, Ptr::Misaligned(_)));
        p
    };
    let grads_ptr = if project {
        pick(&mut b, grads_buf, 4 * grads_len, 4, true)
    } else {
        Ptr::Own
    };
    let merged_ptr = if want_merged {
        pick(
            &mut b,
            merged_buf,
            4 * merged_len,
            4,
            !project || merged_len > 0,
        )
    } else {
        Ptr::Null
    };
    let matrix_ptr = if want_matrix {
        pick(&mut b, matrix_buf, 8 * matrix_len, 8, matrix_len > 0)
    } else {
        Ptr::Null
    };
    let ws_ptr = pick(&mut b, ws_buf, 8 * ws_len, 8, true);
    valid &= !bad_ptr;
    let grads_ptr = if !project && b.chance(20) {
        valid = false;
        [Ptr::Null, Ptr::Misaligned(1 + b.below(3))][b.below(2)]
    } else {
        grads_ptr
    };
    let stats_ptr = if !want_stats {
        Ptr::Null
    } else if b.chance(20) {
        valid = false;
        Ptr::Misaligned(1 + b.below(7))
    } else {
        Ptr::Own
    };

    // Fill the buffers.
    let config = cfg.place(&mut arena);
    arena.write(grads_buf, &g);
    arena.write(seg_buf, &segs);
    arena.write(mask_buf, &mask);
    let gp: *mut f32 = arena.resolve(Some(grads_buf), grads_ptr);
    let sp: *const usize = arena.resolve(Some(seg_buf), seg_ptr);
    let hp: *const u8 = arena.resolve(Some(mask_buf), mask_ptr);
    let mp: *mut f32 = arena.resolve(Some(merged_buf), merged_ptr);
    let stp: *mut pcgrad_stats = arena.resolve(Some(stats_buf), stats_ptr);
    let xp: *mut f64 = arena.resolve(Some(matrix_buf), matrix_ptr);
    let wp: *mut f64 = arena.resolve(Some(ws_buf), ws_ptr);
    let mut regions = cfg.regions(&mut arena, config);
    regions.extend([
        (gp as usize, 4 * grads_len, project),
        (sp as usize, 8 * seg_len, false),
        (hp as usize, mask_len, false),
        (mp as usize, 4 * merged_len, true),
        (stp as usize, if stp.is_null() { 0 } else { 16 }, true),
        (xp as usize, 8 * matrix_len, true),
        (wp as usize, 8 * ws_len, true),
    ]);
    valid &= !overlaps(&regions);
    let before = arena.snapshot();

    // SAFETY: every non-NULL pointer points into the arena with room for
    // its length (the arena's tail covers moved pointers); misaligned and
    // dangling ones must be refused or left unread by the library.
    let st = unsafe {
        if project {
            pcgrad_project_flat(
                config, gp, grads_len, sp, seg_len, hp, mask_len, tasks, dim, mp, merged_len, stp,
                xp, matrix_len, wp, ws_len,
            )
        } else {
            pcgrad_merge_flat(
                config, gp, grads_len, sp, seg_len, hp, mask_len, tasks, dim, mp, merged_len, stp,
                xp, matrix_len, wp, ws_len,
            )
        }
    };
    let nonfinite = cfg.check_finite == 1 && !finite_inputs(&sh, &g);
    let what = if project {
        "pcgrad_project_flat"
    } else {
        "pcgrad_merge_flat"
    };
    if (st == pcgrad_status::PCGRAD_OK) != (valid && !nonfinite) {
        eprintln!(
            "{what} -> {st:?}: T={tasks} N={dim} t={t} n={n} grads_len={grads_len} segs={segs:?} \
             seg_len={seg_len} seg_ptr={seg_ptr:?} mask={mask:?} mask_len={mask_len} mask_ptr={mask_ptr:?} \
             merged={merged_ptr:?}/{merged_len} stats={stats_ptr:?} matrix={matrix_ptr:?}/{matrix_len} \
             ws={ws_ptr:?}/{ws_len} need {ws_need} grads_ptr={grads_ptr:?} cfg valid={} \
             mode={} order={} red={} check={} matrix={} table={:?}/{} {:?} rng={:?} cfg_ptr={:?}",
            cfg.valid, cfg.mode, cfg.order, cfg.reduction, cfg.check_finite, cfg.matrix,
            cfg.table, cfg.table_len, cfg.table_ptr, cfg.rng_ptr, cfg.cfg_ptr
        );
    }
    check_status(st, valid, nonfinite, what);

    if st != pcgrad_status::PCGRAD_OK {
        // Only the workspace (scratch) may have been written.
        arena.assert_unchanged(&before, &[arena.span_of(wp as usize, 8 * ws_len)], what);
        return;
    }
    arena.assert_unchanged(&before, &arena.outputs(&regions), what);

    // The results, read where the call wrote them.
    let (merged_buf, grads_buf, stats_buf, matrix_buf) = (
        if merged_ptr == Ptr::Own {
            merged_buf
        } else {
            return;
        },
        if grads_ptr == Ptr::Own {
            grads_buf
        } else {
            return;
        },
        if stats_ptr == Ptr::Own {
            stats_buf
        } else {
            return;
        },
        if matrix_ptr == Ptr::Own {
            matrix_buf
        } else {
            return;
        },
    );
    let e = Expect::new(&sh, &g, &cfg.orders, cfg.mean());
    cfg.check_rng(&mut arena, e.rng_after);
    if want_merged && !merged_absent {
        let got = arena.read::<f32>(merged_buf, n);
        e.check(
            &format!("{what} merged"),
            &got,
            &e.r.merged,
            &all(n),
            !project,
        );
    }
    if project {
        let got = arena.read::<f32>(grads_buf, t * n);
        e.check(
            &format!("{what} projected"),
            &got,
            &e.r.projected,
            &all(t * n),
            false,
        );
    }
    if want_stats {
        let got = arena.read::<pcgrad_stats>(stats_buf, 1)[0];
        e.check_stats(t, got.conflicting_pairs, got.projections);
    }
    if want_matrix && matrix_len > 0 {
        let got = arena.read::<f64>(matrix_buf, t * t);
        e.check_matrix(t, cfg.matrix == PCGRAD_MATRIX_COSINE, &got);
    }
}
