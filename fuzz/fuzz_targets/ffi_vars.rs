//! `pcgrad_merge_vars` and `pcgrad_project_vars`: one guarded buffer per
//! (task, variable) cell (NULL for a task without that variable) and per
//! merged variable; the input chooses the shape, values, config, NULL and
//! misaligned pointer arrays and cells, lengths one off, short workspaces
//! and output cells moved onto other buffers (overlaps).
//!
//! Checked as `ffi_flat`: an invalid call fails and changes no byte but
//! the workspace; a valid one succeeds, writes only its outputs (never a
//! NULL cell's neighbours) and matches the float64 reference.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pcgrad_fuzz::*;

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let (mut sh, g) = problem_input(&mut b, 12, 200);
    let project = b.bool();
    if sh.segments.is_empty() {
        sh.segments = vec![sh.dim];
    }
    if sh.has_grad.is_empty() {
        sh.has_grad = vec![true; sh.tasks * sh.segments.len()];
    }
    let (t, n, s) = (sh.tasks, sh.dim, sh.segments.len());
    let mut cfg = CfgChoice::draw(&mut b, t);
    let mut valid = cfg.valid;
    let mut tasks = t;
    if b.chance(30) {
        tasks = if b.bool() { 0 } else { t + 1 };
        valid = false;
    }
    let segs = sh.segments.clone();

    let mut arena = Arena::new();
    cfg.plan(&mut arena);
    let starts: Vec<usize> = sh
        .segments
        .iter()
        .scan(0, |p, &l| {
            *p += l;
            Some(*p - l)
        })
        .collect();
    let cells: Vec<Option<Buf>> = (0..t * s)
        .map(|c| sh.has_grad[c].then(|| arena.alloc(4 * sh.segments[c % s])))
        .collect();
    let outs: Vec<Buf> = (0..s).map(|k| arena.alloc(4 * sh.segments[k])).collect();
    let grads_arr = arena.alloc(8 * t * s);
    let merged_arr = arena.alloc(8 * s);
    let seg_buf = arena.alloc(8 * s);
    let stats_buf = arena.alloc(16);
    let matrix_buf = arena.alloc(8 * t * t);
    let mut need = 0usize;
    // SAFETY: `need` is a valid out pointer.
    assert_eq!(
        unsafe { pcgrad_workspace_len_vars(t, s, &mut need) },
        pcgrad_status::PCGRAD_OK
    );
    let ws_len = if !b.chance(8) {
        need
    } else if b.bool() {
        need + 1 + b.below(64)
    } else {
        // Short (checked below, against the variables the call reads).
        need - 1 - b.below(need)
    };
    let ws_buf = arena.alloc(8 * ws_len);
    arena.finish();

    // The three table lengths: whether they describe the drawn problem
    // is decided below, once all three are known.
    let (mut grads_len, grads_bad) = mutate_len(&mut b, t * s);
    let (seg_len, seg_bad) = mutate_len(&mut b, s);
    let want_merged = !project || b.bool();
    let (merged_len, bad) = if want_merged {
        mutate_len(&mut b, s)
    } else {
        (0, false)
    };
    // An optional table of length 0 is absent whatever its pointer (the
    // header's rule): only the projecting call's `merged` is optional.
    let merged_absent = project && merged_len == 0;
    let merged_bad = bad && !merged_absent;
    // The library knows S only as `segments_len` (and T as `tasks`), so
    // mutated lengths that agree with each other describe another
    // problem, not a length mismatch. With T = 1 a table one shorter is
    // T * (S - 1) long: a call whose three tables are all one short
    // (`merged` possibly absent) is a valid call on the first S - 1
    // variables (for S = 1: no variable, N = 0). Any other agreeing
    // mutation (T = 1 with every table one longer, `tasks` = T + 1 with
    // the tables re-cut) would have the library read past the harness's
    // buffers, a call the contract rules out: `grads_len` is then made
    // one longer than the call's T * S, which is refused before any
    // table is read.
    let agrees = tasks > 0
        && grads_len == tasks * seg_len
        && (merged_len == seg_len || merged_absent);
    let prefix = agrees && tasks == t && seg_len < s;
    if agrees && !prefix && (tasks, seg_len) != (t, s) {
        grads_len = tasks * seg_len + 1;
    }
    // The variables the library reads.
    let sc = if prefix { seg_len } else { s };
    valid &= prefix || !(grads_bad || seg_bad || merged_bad);
    let mut need_call = 0usize;
    // SAFETY: `need_call` is a valid out pointer.
    assert_eq!(
        unsafe { pcgrad_workspace_len_vars(t, sc, &mut need_call) },
        pcgrad_status::PCGRAD_OK
    );
    valid &= ws_len >= need_call;
    let want_stats = b.bool();
    let want_matrix = b.bool();
    let (matrix_len, bad) = if want_matrix {
        mutate_len(&mut b, t * t)
    } else {
        (0, false)
    };
    // Length 0: absent (see `merged_absent`).
    valid &= !(bad && matrix_len > 0);

    // The cell pointers: own buffers; sometimes one is moved onto another
    // buffer of the call (overlap) or misaligned.
    let config = cfg.place(&mut arena);
    let mut cell_ptrs: Vec<*mut f32> = Vec::new();
    let mut moved = false;
    // Only the cells and outputs of the variables read count.
    let read = |c: usize| c % s < sc;
    let mut overlap_targets: Vec<Buf> = cells.iter().flatten().copied().collect();
    if want_merged {
        overlap_targets.extend(&outs);
    }
    overlap_targets.extend([seg_buf, grads_arr, ws_buf]);
    for c in 0..t * s {
        let k = c % s;
        let Some(buf) = cells[c] else {
            cell_ptrs.push(core::ptr::null_mut());
            continue;
        };
        arena.write(
            buf,
            &g[(c / s) * n + starts[k]..(c / s) * n + starts[k] + sh.segments[k]],
        );
        let bytes = 4 * sh.segments[k];
        // Moving a cell is an overlap only where the call writes it.
        let o: Vec<Buf> = overlap_targets
            .iter()
            .copied()
            .filter(|&x| x != buf)
            .collect();
        let (p, bad) = if project {
            mutate_ptr(&mut b, &arena, bytes, 4, false, &o)
        } else if b.chance(30) {
            (Ptr::Misaligned(1 + b.below(3)), true)
        } else {
            (Ptr::Own, false)
        };
        // A NULL cell is a task without that variable: valid, but then
        // the reference differs; keep the cell as it is instead.
        let p = if p == Ptr::Null { Ptr::Own } else { p };
        valid &= !(bad && p != Ptr::Own && read(c));
        moved |= p != Ptr::Own && read(c);
        cell_ptrs.push(arena.resolve(Some(buf), p));
    }
    let mut out_ptrs: Vec<*mut f32> = Vec::new();
    for (k, &buf) in outs.iter().enumerate() {
        let bytes = 4 * sh.segments[k];
        let o: Vec<Buf> = overlap_targets
            .iter()
            .copied()
            .filter(|&x| x != buf)
            .collect();
        let (p, bad) = if want_merged {
            mutate_ptr(&mut b, &arena, bytes, 4, true, &o)
        } else {
            (Ptr::Own, false)
        };
        // An absent table's entries are never read.
        valid &= !(bad && !merged_absent && k < sc);
        moved |= p != Ptr::Own && k < sc;
        out_ptrs.push(arena.resolve(Some(buf), p));
    }
    arena.write(grads_arr, &cell_ptrs);
    arena.write(merged_arr, &out_ptrs);
    arena.write(seg_buf, &segs);
    let arr_ptr = |b: &mut Bytes, valid: &mut bool| {
        if b.chance(30) {
            *valid = false;
            [Ptr::Null, Ptr::Misaligned(1 + b.below(7))][b.below(2)]
        } else {
            Ptr::Own
        }
    };
    let gk = arr_ptr(&mut b, &mut valid);
    let sk = arr_ptr(&mut b, &mut valid);
    let mk = if want_merged {
        let mut ok = true;
        let p = arr_ptr(&mut b, &mut ok);
        valid &= ok || merged_absent;
        p
    } else {
        Ptr::Null
    };
    let wk = arr_ptr(&mut b, &mut valid);
    let gp: *const *mut f32 = arena.resolve(Some(grads_arr), gk);
    let sp: *const usize = arena.resolve(Some(seg_buf), sk);
    let mp: *const *mut f32 = arena.resolve(Some(merged_arr), mk);
    let stp: *mut pcgrad_stats = if want_stats {
        arena.ptr(stats_buf, 0)
    } else {
        core::ptr::null_mut()
    };
    let xp: *mut f64 = if want_matrix {
        arena.ptr(matrix_buf, 0)
    } else {
        core::ptr::null_mut()
    };
    let wp: *mut f64 = arena.resolve(Some(ws_buf), wk);
    let mut regions = cfg.regions(&mut arena, config);
    regions.extend([
        (gp as usize, 8 * grads_len, false),
        (sp as usize, 8 * seg_len, false),
        (mp as usize, 8 * merged_len, false),
        (stp as usize, if stp.is_null() { 0 } else { 16 }, true),
        (xp as usize, 8 * matrix_len, true),
        (wp as usize, 8 * ws_len, true),
    ]);
    if gk == Ptr::Own && grads_len == t * sc {
        for (c, &p) in cell_ptrs.iter().enumerate().filter(|&(c, _)| read(c)) {
            regions.push((p as usize, 4 * sh.segments[c % s], project));
        }
    }
    if mk == Ptr::Own && merged_len == sc {
        for (k, &p) in out_ptrs.iter().enumerate().take(sc) {
            regions.push((p as usize, 4 * sh.segments[k], true));
        }
    }
    valid &= !overlaps(&regions);
    let before = arena.snapshot();
    // SAFETY: every pointer points into the arena with room for its length
    // or is refused by the library (NULL, misaligned).
    let st = unsafe {
        if project {
            pcgrad_project_vars(
                config, gp, grads_len, sp, seg_len, tasks, mp, merged_len, stp, xp, matrix_len, wp,
                ws_len,
            )
        } else {
            pcgrad_merge_vars(
                config,
                gp.cast(),
                grads_len,
                sp,
                seg_len,
                tasks,
                mp,
                merged_len,
                stp,
                xp,
                matrix_len,
                wp,
                ws_len,
            )
        }
    };
    // The problem the call describes: the first `sc` variables.
    let (sh, g) = if prefix {
        let dim = sh.segments[..sc].iter().sum::<usize>();
        let sub = Shape {
            tasks: t,
            dim,
            segments: if sc == 0 { vec![0] } else { sh.segments[..sc].to_vec() },
            has_grad: if sc == 0 {
                vec![true; t]
            } else {
                (0..t * s).filter(|&c| read(c)).map(|c| sh.has_grad[c]).collect()
            },
        };
        let g: Vec<f32> = (0..t).flat_map(|i| g[i * n..i * n + dim].to_vec()).collect();
        (sub, g)
    } else {
        (sh, g)
    };
    let nonfinite = cfg.check_finite == 1 && !finite_inputs(&sh, &g);
    let what = if project {
        "pcgrad_project_vars"
    } else {
        "pcgrad_merge_vars"
    };
    if moved && valid && cfg.check_finite == 1 {
        // A cell moved onto another buffer of the call: the library reads
        // that buffer's values, not the problem's, so whether it finds a
        // non-finite one is not known here (checked below: nothing but the
        // workspace changes on a refusal).
        assert!(
            st == pcgrad_status::PCGRAD_OK || st == pcgrad_status::PCGRAD_ERROR_NON_FINITE,
            "{what}: a valid call with a moved cell failed with {st:?}"
        );
    } else {
        check_status(st, valid, nonfinite, what);
    }
    if st != pcgrad_status::PCGRAD_OK {
        // Only the workspace (scratch) may have been written.
        arena.assert_unchanged(&before, &[arena.span_of(wp as usize, 8 * ws_len)], what);
        return;
    }
    arena.assert_unchanged(&before, &arena.outputs(&regions), what);
    if moved {
        // A cell moved onto a buffer the call does not write: valid, but
        // its values are not the problem's any more.
        return;
    }
    let e = Expect::new(&sh, &g, &cfg.orders, cfg.mean());
    cfg.check_rng(&mut arena, e.rng_after);
    let n = sh.dim;
    if want_merged && !merged_absent {
        for k in 0..sc {
            let got = arena.read::<f32>(outs[k], sh.segments[k]);
            let idx: Vec<usize> = (starts[k]..starts[k] + sh.segments[k]).collect();
            e.check(&format!("{what} merged"), &got, &e.r.merged, &idx, !project);
        }
    }
    if project {
        for c in (0..t * s).filter(|&c| read(c)) {
            if let Some(buf) = cells[c] {
                let k = c % s;
                let got = arena.read::<f32>(buf, sh.segments[k]);
                let row = (c / s) * n + starts[k];
                let idx: Vec<usize> = (row..row + sh.segments[k]).collect();
                e.check(
                    &format!("{what} projected"),
                    &got,
                    &e.r.projected,
                    &idx,
                    false,
                );
            }
        }
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
