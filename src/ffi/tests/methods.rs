//! The method entry points: results equal to the Rust API (`methods`), the
//! bad-input table, and state left untouched by a failed call.

use super::*;
use crate::methods::{self, AlignedMtl, CaGrad, DualCone, ImtlG, Method, Mgda};

const KINDS: [u32; 13] = [
    PCGRAD_METHOD_PCGRAD,
    PCGRAD_METHOD_PPCGRAD,
    PCGRAD_METHOD_MGDA,
    PCGRAD_METHOD_UPGRAD,
    PCGRAD_METHOD_DUALPROJ,
    PCGRAD_METHOD_CAGRAD,
    PCGRAD_METHOD_IMTL_G,
    PCGRAD_METHOD_ALIGNED_MTL,
    PCGRAD_METHOD_NASH_MTL,
    PCGRAD_METHOD_GRADVAC,
    PCGRAD_METHOD_MEAN,
    PCGRAD_METHOD_SUM,
    PCGRAD_METHOD_RANDOM,
];

/// The caller-owned state of one method, C side and Rust side alike.
struct State {
    rng: Rng,
    targets: Vec<f64>,
    alpha: Vec<f64>,
    step: u64,
}

impl State {
    fn new(t: usize) -> State {
        State {
            rng: Rng::new(SEED),
            targets: vec![0.0; t * t],
            alpha: vec![0.0; t],
            step: 0,
        }
    }

    fn bits(&self) -> (u64, Vec<u64>, Vec<u64>, u64) {
        (
            self.rng.state,
            bits64(&self.targets),
            bits64(&self.alpha),
            self.step,
        )
    }
}

/// A zeroed method of `kind` with its state pointers into `st`.
fn c_method(kind: u32, st: &mut State) -> pcgrad_method {
    // SAFETY: numbers and raw pointers only: all-zero bits are valid.
    let mut m: pcgrad_method = unsafe { core::mem::zeroed() };
    m.kind = kind;
    m.rng = &mut st.rng;
    m.targets = mp(&mut st.targets);
    m.targets_len = st.targets.len();
    m.nash_alpha = mp(&mut st.alpha);
    m.nash_alpha_len = st.alpha.len();
    m.nash_step = &mut st.step;
    m
}

/// The Rust method the zeroed C method of `kind` stands for.
fn rust_method(kind: u32, st: &mut State) -> Method<'_> {
    match kind {
        PCGRAD_METHOD_PCGRAD => Method::PcGrad(PcGrad::with_mode(Mode::Sequential(Order::Fixed))),
        PCGRAD_METHOD_PPCGRAD => Method::PcGrad(PcGrad::with_mode(Mode::Simultaneous)),
        PCGRAD_METHOD_MGDA => Method::Mgda(Mgda::default()),
        PCGRAD_METHOD_UPGRAD => Method::UpGrad(DualCone::default()),
        PCGRAD_METHOD_DUALPROJ => Method::DualProj(DualCone::default()),
        PCGRAD_METHOD_CAGRAD => Method::CaGrad(CaGrad::default()),
        PCGRAD_METHOD_IMTL_G => Method::ImtlG(ImtlG::default()),
        PCGRAD_METHOD_ALIGNED_MTL => Method::AlignedMtl(AlignedMtl::default()),
        PCGRAD_METHOD_NASH_MTL => Method::NashMtl(
            methods::NashMtl::default(),
            methods::NashState {
                alpha: &mut st.alpha,
                step: st.step,
            },
        ),
        PCGRAD_METHOD_GRADVAC => {
            Method::GradVac(methods::GradVac::default(), &mut st.targets, &mut st.rng)
        }
        PCGRAD_METHOD_MEAN => Method::Mean,
        PCGRAD_METHOD_SUM => Method::Sum,
        _ => Method::Random(&mut st.rng),
    }
}

fn ws_len(m: &pcgrad_method, t: usize, aggregate: bool) -> usize {
    let mut n = 0;
    // SAFETY: both pointers are live locals.
    let s = unsafe {
        if aggregate {
            pcgrad_aggregate_workspace_len(m, t, &mut n)
        } else {
            pcgrad_method_workspace_len(m, t, &mut n)
        }
    };
    assert_eq!(s, PCGRAD_OK);
    n
}

fn gram_of(g: &[f32], t: usize) -> Vec<f64> {
    let mut gram = vec![0.0; t * t];
    for i in 0..t {
        for j in 0..t {
            gram[i * t + j] = (0..N)
                .map(|c| f64::from(g[i * N + c]) * f64::from(g[j * N + c]))
                .sum();
        }
    }
    gram
}

/// Calls `pcgrad_aggregate_flat` with the method's state in `st`.
fn aggregate_c(m: &pcgrad_method, g: &[f32], t: usize, out: &mut Vec<f32>) -> pcgrad_status {
    let mut ws = vec![SENT64; ws_len(m, t, true)];
    // SAFETY: every buffer is a live vector of the length passed.
    unsafe {
        pcgrad_aggregate_flat(
            m,
            g.as_ptr(),
            g.len(),
            ptr::null(),
            0,
            ptr::null(),
            0,
            t,
            N,
            mp(out),
            out.len(),
            mp(&mut ws),
            ws.len(),
        )
    }
}

#[test]
fn aggregate_and_weights_equal_the_rust_api() {
    for &t in TASKS {
        let g = grads(t, false);
        let gram = gram_of(&g, t);
        for kind in KINDS {
            // Two steps, so the stateful methods carry their state over.
            let (mut cs, mut rs) = (State::new(t), State::new(t));
            for _ in 0..2 {
                let m = c_method(kind, &mut cs);
                let mut out = vec![SENT32; N];
                assert_eq!(aggregate_c(&m, &g, t, &mut out), PCGRAD_OK, "{kind} T={t}");
                let mut want = vec![SENT32; N];
                let mut ws = vec![0.0; ws_len(&m, t, true)];
                let flat = Flat::new(Layout::new(t, N, &[], &[]).unwrap(), &g).unwrap();
                {
                    let mut rm = rust_method(kind, &mut rs);
                    methods::aggregate(&mut rm, &flat, &mut want, &mut ws).unwrap();
                    if let Method::NashMtl(_, s) = &rm {
                        rs.step = s.step;
                    }
                }
                assert_eq!(bits32(&out), bits32(&want), "{kind} T={t}");
                assert_eq!(cs.bits(), rs.bits(), "state of {kind} T={t}");
            }
            // Phase 2 alone on the same Gram matrix.
            let (mut cs, mut rs) = (State::new(t), State::new(t));
            let m = c_method(kind, &mut cs);
            let mut w = vec![SENT64; t];
            let mut ws = vec![SENT64; ws_len(&m, t, false)];
            // SAFETY: live vectors of the lengths passed.
            let s = unsafe {
                pcgrad_method_weights(
                    &m,
                    gram.as_ptr(),
                    gram.len(),
                    t,
                    w.as_mut_ptr(),
                    t,
                    ws.as_mut_ptr(),
                    ws.len(),
                )
            };
            assert_eq!(s, PCGRAD_OK, "{kind} T={t}");
            let mut want = vec![0.0; t];
            let mut rm = rust_method(kind, &mut rs);
            methods::method_weights(&mut rm, &gram, t, &mut want, &mut ws).unwrap();
            assert_eq!(bits64(&w), bits64(&want), "weights of {kind} T={t}");
            assert!(w.iter().all(|x| x.is_finite()));
        }
    }
}

#[test]
fn pcgrad_kinds_are_merge_flat_bitwise() {
    let t = 3;
    let g = grads(t, false);
    let mut rng = Rng::new(SEED);
    let mut cfg = default_config();
    cfg.order = PCGRAD_ORDER_SHUFFLED;
    cfg.reduction = PCGRAD_REDUCTION_SUM;
    cfg.rng = &mut rng;
    let mut st = State::new(t);
    let mut m = c_method(PCGRAD_METHOD_PCGRAD, &mut st);
    m.config = &cfg;
    let mut out = vec![SENT32; N];
    assert_eq!(aggregate_c(&m, &g, t, &mut out), PCGRAD_OK);
    let after = rng.state;
    let mut rng2 = Rng::new(SEED);
    let mut want = vec![0.0f32; N];
    let mut ws = vec![0.0; crate::workspace_len(t).unwrap()];
    let flat = Flat::new(Layout::new(t, N, &[], &[]).unwrap(), &g).unwrap();
    PcGrad::with_mode(Mode::Sequential(Order::Shuffled(&mut rng2)))
        .reduction(Reduction::Sum)
        .merge(&flat, &mut want, &mut ws)
        .unwrap();
    assert_eq!(bits32(&out), bits32(&want));
    assert_eq!(after, rng2.state);
    // The config's mode must agree with the kind.
    m.kind = PCGRAD_METHOD_PPCGRAD;
    let before = bits32(&out);
    assert_eq!(aggregate_c(&m, &g, t, &mut out), PCGRAD_ERROR_INVALID_ENUM);
    assert_eq!(bits32(&out), before);
}

/// One bad input: what to change, and the status it must give.
type Edit = fn(&mut pcgrad_method, &mut Vec<f64>);

#[test]
fn refusals_leave_every_buffer_and_the_state_untouched() {
    let t = 3;
    let g = grads(t, false);
    let good = gram_of(&g, t);
    let cases: [(u32, Edit, pcgrad_status); 19] = [
        (13, |_, _| {}, PCGRAD_ERROR_INVALID_ENUM),
        (u32::MAX, |_, _| {}, PCGRAD_ERROR_INVALID_ENUM),
        (
            PCGRAD_METHOD_CAGRAD,
            |m, _| m.c = -0.5,
            PCGRAD_ERROR_INVALID_PARAMETER,
        ),
        (
            PCGRAD_METHOD_CAGRAD,
            |m, _| m.c = f64::NAN,
            PCGRAD_ERROR_INVALID_PARAMETER,
        ),
        (
            PCGRAD_METHOD_CAGRAD,
            |m, _| m.c = f64::INFINITY,
            PCGRAD_ERROR_INVALID_PARAMETER,
        ),
        (
            PCGRAD_METHOD_MGDA,
            |m, _| m.tol = f64::NAN,
            PCGRAD_ERROR_INVALID_PARAMETER,
        ),
        (
            PCGRAD_METHOD_UPGRAD,
            |m, _| m.reg = -1e-9,
            PCGRAD_ERROR_INVALID_PARAMETER,
        ),
        (
            PCGRAD_METHOD_DUALPROJ,
            |m, _| m.reg = f64::NAN,
            PCGRAD_ERROR_INVALID_PARAMETER,
        ),
        (
            PCGRAD_METHOD_IMTL_G,
            |m, _| m.eps = -1.0,
            PCGRAD_ERROR_INVALID_PARAMETER,
        ),
        (
            PCGRAD_METHOD_ALIGNED_MTL,
            |m, _| m.scale = 3,
            PCGRAD_ERROR_INVALID_ENUM,
        ),
        (
            PCGRAD_METHOD_GRADVAC,
            |m, _| m.beta = 1.5,
            PCGRAD_ERROR_INVALID_PARAMETER,
        ),
        (
            PCGRAD_METHOD_NASH_MTL,
            |m, _| m.max_norm = -1.0,
            PCGRAD_ERROR_INVALID_PARAMETER,
        ),
        (
            PCGRAD_METHOD_RANDOM,
            |m, _| m.rng = ptr::null_mut(),
            PCGRAD_ERROR_NULL_POINTER,
        ),
        (
            PCGRAD_METHOD_GRADVAC,
            |m, _| m.targets = ptr::null_mut(),
            PCGRAD_ERROR_NULL_POINTER,
        ),
        (
            PCGRAD_METHOD_GRADVAC,
            |m, _| m.targets_len = 4,
            PCGRAD_ERROR_LENGTH_MISMATCH,
        ),
        (
            PCGRAD_METHOD_NASH_MTL,
            |m, _| m.nash_step = ptr::null_mut(),
            PCGRAD_ERROR_NULL_POINTER,
        ),
        (
            PCGRAD_METHOD_NASH_MTL,
            |m, _| m.nash_alpha = ptr::null_mut(),
            PCGRAD_ERROR_NULL_POINTER,
        ),
        // A Gram matrix no gradients have, and a non-finite one.
        (
            PCGRAD_METHOD_UPGRAD,
            |_, g| g[0] = -1.0,
            PCGRAD_ERROR_NOT_PSD,
        ),
        (
            PCGRAD_METHOD_MGDA,
            |_, g| g[4] = f64::NAN,
            PCGRAD_ERROR_NON_FINITE,
        ),
    ];
    for (kind, edit, want) in cases {
        let mut st = State::new(t);
        // A state that is not the fresh one, to see it is not reset.
        st.targets.iter_mut().for_each(|x| *x = 0.25);
        st.alpha.iter_mut().for_each(|x| *x = 0.5);
        st.step = 7;
        let before = st.bits();
        let mut m = c_method(kind, &mut st);
        let mut gram = good.clone();
        edit(&mut m, &mut gram);
        let mut w = vec![SENT64; t];
        let mut ws = vec![SENT64; 3 * t * t + 8 * t + 64];
        // SAFETY: live vectors of the lengths passed; the state pointers
        // point into `st` with the lengths they say (or NULL).
        let s = unsafe {
            pcgrad_method_weights(
                &m,
                gram.as_ptr(),
                gram.len(),
                t,
                w.as_mut_ptr(),
                t,
                ws.as_mut_ptr(),
                ws.len(),
            )
        };
        assert_eq!(s, want, "kind {kind}, weights");
        assert!(w.iter().all(|x| x.to_bits() == SENT64.to_bits()));
        assert_eq!(st.bits(), before, "state of kind {kind}");
        if gram == good {
            let mut out = vec![SENT32; N];
            let mut ws = vec![SENT64; 3 * t * t + 8 * t + 64 + crate::workspace_len(t).unwrap()];
            // SAFETY: as above.
            let s = unsafe {
                pcgrad_aggregate_flat(
                    &m,
                    g.as_ptr(),
                    g.len(),
                    ptr::null(),
                    0,
                    ptr::null(),
                    0,
                    t,
                    N,
                    out.as_mut_ptr(),
                    N,
                    ws.as_mut_ptr(),
                    ws.len(),
                )
            };
            assert_eq!(s, want, "kind {kind}, aggregate");
            assert!(out.iter().all(|x| x.to_bits() == SENT32.to_bits()));
            assert_eq!(st.bits(), before, "state of kind {kind}");
        }
    }
}

#[test]
fn sizes_shapes_and_overlaps_are_refused() {
    let mut st = State::new(2);
    let m = c_method(PCGRAD_METHOD_UPGRAD, &mut st);
    let mut n = 0usize;
    // SAFETY: live locals or NULL.
    unsafe {
        // T too large for the method's workspace.
        assert_eq!(
            pcgrad_method_workspace_len(&m, usize::MAX / 2, &mut n),
            PCGRAD_ERROR_OVERFLOW
        );
        assert_eq!(
            pcgrad_aggregate_workspace_len(&m, 1 << 33, &mut n),
            PCGRAD_ERROR_OVERFLOW
        );
        assert_eq!(
            pcgrad_method_workspace_len(&m, 0, &mut n),
            PCGRAD_ERROR_NO_TASKS
        );
        assert_eq!(
            pcgrad_method_workspace_len(ptr::null(), 2, &mut n),
            PCGRAD_ERROR_NULL_POINTER
        );
        assert_eq!(
            pcgrad_method_workspace_len(&m, 2, ptr::null_mut()),
            PCGRAD_ERROR_NULL_POINTER
        );
    }
    let gram = [1.0, 0.5, 0.5, 2.0];
    let mut w = vec![SENT64; 2];
    let need = ws_len(&m, 2, false);
    let mut ws = vec![SENT64; need];
    let call = |m: &pcgrad_method, gl: usize, w: *mut f64, wl: usize, ws: *mut f64, wsl: usize| {
        // SAFETY: every pointer is live for the length passed or the call
        // refuses it before reading.
        unsafe { pcgrad_method_weights(m, gram.as_ptr(), gl, 2, w, wl, ws, wsl) }
    };
    let (wp, wsp) = (w.as_mut_ptr(), ws.as_mut_ptr());
    assert_eq!(call(&m, 3, wp, 2, wsp, need), PCGRAD_ERROR_LENGTH_MISMATCH);
    assert_eq!(call(&m, 4, wp, 3, wsp, need), PCGRAD_ERROR_LENGTH_MISMATCH);
    assert_eq!(
        call(&m, 4, wp, 2, wsp, need - 1),
        PCGRAD_ERROR_WORKSPACE_TOO_SMALL
    );
    assert_eq!(
        call(&m, 4, ptr::null_mut(), 2, wsp, need),
        PCGRAD_ERROR_NULL_POINTER
    );
    assert_eq!(
        call(&m, 4, mis_mut(wp), 2, wsp, need),
        PCGRAD_ERROR_MISALIGNED
    );
    // The weights inside the workspace.
    assert_eq!(call(&m, 4, wsp, 2, wsp, need), PCGRAD_ERROR_OVERLAP);
    assert!(w.iter().all(|x| x.to_bits() == SENT64.to_bits()));
    // The state overlapping the weights.
    let mut st = State::new(2);
    let mut gv = c_method(PCGRAD_METHOD_GRADVAC, &mut st);
    gv.targets = wp;
    gv.targets_len = 2;
    let need = ws_len(&gv, 2, false);
    let mut ws = vec![SENT64; need];
    assert_eq!(
        call(&gv, 4, wp, 2, ws.as_mut_ptr(), need),
        PCGRAD_ERROR_OVERLAP
    );
    assert_eq!(call(&m, 4, wp, 2, wsp, 0), PCGRAD_ERROR_WORKSPACE_TOO_SMALL);
}

/// The weights of every method on the gradients of
/// `c_examples/methods_test.c` (T = 3, N = 6), printed with `--nocapture`
/// for that test's table of Rust values, and checked here against the same
/// table (so the C test and this one hold the same numbers).
#[test]
fn weights_of_the_c_example() {
    let g: [f32; 18] = [
        1.0, 0.0, 2.0, 0.0, 1.0, 0.5, -1.0, 1.0, 0.0, 0.5, 0.0, -1.0, 0.5, 0.5, -1.0, 1.0, 0.25,
        0.0,
    ];
    let (t, n) = (3, 6);
    let mut gram = vec![0.0; t * t];
    for i in 0..t {
        for j in 0..t {
            gram[i * t + j] = (0..n)
                .map(|c| f64::from(g[i * n + c]) * f64::from(g[j * n + c]))
                .sum();
        }
    }
    let table = want_table();
    assert_eq!(table.len(), KINDS.len());
    for kind in KINDS {
        let mut st = State::new(t);
        st.rng = Rng::new(1);
        let m = c_method(kind, &mut st);
        let mut w = vec![SENT64; t];
        let mut ws = vec![0.0; ws_len(&m, t, false)];
        // SAFETY: live vectors of the lengths passed.
        let s = unsafe {
            pcgrad_method_weights(
                &m,
                gram.as_ptr(),
                gram.len(),
                t,
                w.as_mut_ptr(),
                t,
                ws.as_mut_ptr(),
                ws.len(),
            )
        };
        assert_eq!(s, PCGRAD_OK);
        std::println!(
            "    {{{:.17e}, {:.17e}, {:.17e}}}, /* {kind} */",
            w[0],
            w[1],
            w[2]
        );
        assert!(w.iter().all(|x| x.is_finite()));
        let want = &table[kind as usize];
        for (a, b) in w.iter().zip(want) {
            assert!(
                (a - b).abs() <= 1e-15 * b.abs().max(1.0),
                "{kind}: {a} vs {b}"
            );
        }
    }
}

/// The rows of `c_examples/methods_want.inc`: `{a, b, c},` per kind.
fn want_table() -> Vec<[f64; 3]> {
    include_str!("../../../c_examples/methods_want.inc")
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| {
            let inner = &l[l.find('{').unwrap() + 1..l.find('}').unwrap()];
            let v: Vec<f64> = inner
                .split(',')
                .map(|x| x.trim().parse().unwrap())
                .collect();
            [v[0], v[1], v[2]]
        })
        .collect()
}

#[test]
fn aggregate_vars_equals_aggregate_flat() {
    for &t in TASKS {
        let g = grads(t, false);
        // Task t's buffer of variable s: its row's slice of segment s.
        let ptrs: Vec<*const f32> = (0..t * S)
            .map(|c| g[(c / S) * N + seg_start(c % S)..].as_ptr())
            .collect();
        for kind in KINDS {
            let (mut cs, mut fs) = (State::new(t), State::new(t));
            let m = c_method(kind, &mut cs);
            let mut need = 0;
            // SAFETY: live locals.
            let st = unsafe { pcgrad_aggregate_workspace_len_vars(&m, t, S, &mut need) };
            assert_eq!(st, PCGRAD_OK);
            let mut ws = vec![SENT64; need];
            let mut outs: Vec<Vec<f32>> = SEGS.iter().map(|&l| vec![SENT32; l]).collect();
            let outp: Vec<*mut f32> = outs.iter_mut().map(|o| o.as_mut_ptr()).collect();
            // SAFETY: every pointer is live for the length its segment says.
            let st = unsafe {
                pcgrad_aggregate_vars(
                    &m,
                    ptrs.as_ptr(),
                    ptrs.len(),
                    SEGS.as_ptr(),
                    S,
                    t,
                    outp.as_ptr(),
                    S,
                    ws.as_mut_ptr(),
                    ws.len(),
                )
            };
            assert_eq!(st, PCGRAD_OK, "{kind} T={t}");
            let fm = c_method(kind, &mut fs);
            let mut flat = vec![SENT32; N];
            let mut fws = vec![SENT64; ws_len(&fm, t, true)];
            // SAFETY: live vectors of the lengths passed.
            let st = unsafe {
                pcgrad_aggregate_flat(
                    &fm,
                    g.as_ptr(),
                    g.len(),
                    SEGS.as_ptr(),
                    S,
                    ptr::null(),
                    0,
                    t,
                    N,
                    flat.as_mut_ptr(),
                    N,
                    fws.as_mut_ptr(),
                    fws.len(),
                )
            };
            assert_eq!(st, PCGRAD_OK);
            let joined: Vec<f32> = outs.concat();
            assert_eq!(bits32(&joined), bits32(&flat), "{kind} T={t}");
            assert_eq!(cs.bits(), fs.bits(), "state of {kind} T={t}");
        }
    }
}

#[test]
fn aligned_mtl_scales_equal_the_rust_api() {
    use crate::methods::AlignedScale;
    for &t in TASKS {
        let g = grads(t, false);
        for (c, scale) in [
            (PCGRAD_ALIGNED_SCALE_MIN, AlignedScale::Min),
            (PCGRAD_ALIGNED_SCALE_MEDIAN, AlignedScale::Median),
            (PCGRAD_ALIGNED_SCALE_MEAN, AlignedScale::Mean),
        ] {
            let mut cs = State::new(t);
            let mut m = c_method(PCGRAD_METHOD_ALIGNED_MTL, &mut cs);
            m.scale = c;
            let mut out = vec![SENT32; N];
            assert_eq!(
                aggregate_c(&m, &g, t, &mut out),
                PCGRAD_OK,
                "scale {c} T={t}"
            );
            let mut want = vec![SENT32; N];
            let mut ws = vec![0.0; ws_len(&m, t, true)];
            let flat = Flat::new(Layout::new(t, N, &[], &[]).unwrap(), &g).unwrap();
            let mut rm = Method::AlignedMtl(AlignedMtl {
                scale,
                ..AlignedMtl::default()
            });
            methods::aggregate(&mut rm, &flat, &mut want, &mut ws).unwrap();
            assert_eq!(bits32(&out), bits32(&want), "scale {c} T={t}");
            assert!(out.iter().all(|x| x.is_finite()));
        }
    }
}

/// `pcgrad_aggregate_vars` with the cells of `g` (`None`: NULL), into
/// fresh sentinel outputs; `merged_len` as given.
fn aggregate_vars_c(
    m: &pcgrad_method,
    g: &[f32],
    t: usize,
    absent: &[usize],
    merged_len: usize,
) -> (pcgrad_status, Vec<f32>) {
    let ptrs: Vec<*const f32> = (0..t * S)
        .map(|c| {
            if absent.contains(&c) {
                ptr::null()
            } else {
                g[(c / S) * N + seg_start(c % S)..].as_ptr()
            }
        })
        .collect();
    let mut need = 0;
    // SAFETY: live locals.
    let st = unsafe { pcgrad_aggregate_workspace_len_vars(m, t, S, &mut need) };
    assert_eq!(st, PCGRAD_OK);
    let mut ws = vec![SENT64; need];
    let mut outs: Vec<Vec<f32>> = SEGS.iter().map(|&l| vec![SENT32; l]).collect();
    let outp: Vec<*mut f32> = outs.iter_mut().map(|o| o.as_mut_ptr()).collect();
    // SAFETY: every pointer is live for the length its segment says, and
    // `merged_len` is at most S.
    let st = unsafe {
        pcgrad_aggregate_vars(
            m,
            ptrs.as_ptr(),
            ptrs.len(),
            SEGS.as_ptr(),
            S,
            t,
            outp.as_ptr(),
            merged_len,
            ws.as_mut_ptr(),
            ws.len(),
        )
    };
    (st, outs.concat())
}

/// `pcgrad_aggregate_flat` over `g` with segments `SEGS` and the mask
/// `has_grad` (T x S bytes, empty: all present).
fn aggregate_flat_masked(
    m: &pcgrad_method,
    g: &[f32],
    t: usize,
    has_grad: &[u8],
    merged_len: usize,
) -> (pcgrad_status, Vec<f32>) {
    let mut out = vec![SENT32; N];
    let mut ws = vec![SENT64; ws_len(m, t, true)];
    // SAFETY: live vectors of the lengths passed (`merged_len` <= N).
    let st = unsafe {
        pcgrad_aggregate_flat(
            m,
            g.as_ptr(),
            g.len(),
            SEGS.as_ptr(),
            S,
            has_grad.as_ptr(),
            has_grad.len(),
            t,
            N,
            out.as_mut_ptr(),
            merged_len,
            ws.as_mut_ptr(),
            ws.len(),
        )
    };
    (st, out)
}

#[test]
fn aggregate_output_lengths_are_checked() {
    let t = 3;
    let g = grads(t, false);
    for kind in [
        PCGRAD_METHOD_PCGRAD,
        PCGRAD_METHOD_UPGRAD,
        PCGRAD_METHOD_MEAN,
    ] {
        let mut st = State::new(t);
        let m = c_method(kind, &mut st);
        let before = st.bits();
        let (s, out) = aggregate_flat_masked(&m, &g, t, &[], N - 1);
        assert_eq!(s, PCGRAD_ERROR_LENGTH_MISMATCH, "{kind}");
        assert!(
            out.iter().all(|x| x.to_bits() == SENT32.to_bits()),
            "{kind}"
        );
        let (s, out) = aggregate_vars_c(&m, &g, t, &[], S - 1);
        assert_eq!(s, PCGRAD_ERROR_LENGTH_MISMATCH, "{kind}");
        assert!(
            out.iter().all(|x| x.to_bits() == SENT32.to_bits()),
            "{kind}"
        );
        assert_eq!(st.bits(), before, "{kind}");
    }
}

/// A NULL cell (a task without that variable) is the flat call's
/// has_grad 0 there, bitwise, for a PCGrad kind and two Gram methods.
#[test]
fn aggregate_vars_null_cells_are_the_flat_mask() {
    let t = 3;
    let g = grads(t, false);
    // Task 1 has no variable 0, task 2 no variable 2.
    let absent = [S, 2 * S + 2];
    let mask: Vec<u8> = (0..t * S).map(|c| u8::from(!absent.contains(&c))).collect();
    for kind in [
        PCGRAD_METHOD_PCGRAD,
        PCGRAD_METHOD_UPGRAD,
        PCGRAD_METHOD_MEAN,
    ] {
        let (mut vs, mut fs) = (State::new(t), State::new(t));
        let (s, got) = aggregate_vars_c(&c_method(kind, &mut vs), &g, t, &absent, S);
        assert_eq!(s, PCGRAD_OK, "{kind}");
        let (s, want) = aggregate_flat_masked(&c_method(kind, &mut fs), &g, t, &mask, N);
        assert_eq!(s, PCGRAD_OK, "{kind}");
        assert_eq!(bits32(&got), bits32(&want), "{kind}");
        assert!(got.iter().all(|x| x.is_finite()), "{kind}");
    }
    // The masked cells matter: without the mask the result differs.
    let mut st = State::new(t);
    let (_, full) = aggregate_flat_masked(&c_method(PCGRAD_METHOD_MEAN, &mut st), &g, t, &[], N);
    let (_, masked) = aggregate_vars_c(&c_method(PCGRAD_METHOD_MEAN, &mut st), &g, t, &absent, S);
    assert_ne!(bits32(&full), bits32(&masked));
}

/// A PCGrad kind with its own config in the per-variable call: the same
/// result as the flat call with that config, and the nested call's
/// refusal (a NaN under `check_finite`) passed on with nothing written.
#[test]
fn aggregate_vars_pcgrad_with_a_config() {
    let t = 3;
    let mut g = grads(t, false);
    let mut cfg = default_config();
    cfg.reduction = PCGRAD_REDUCTION_SUM;
    cfg.check_finite = 1;
    let (mut vs, mut fs) = (State::new(t), State::new(t));
    let mut vm = c_method(PCGRAD_METHOD_PCGRAD, &mut vs);
    vm.config = &cfg;
    let mut fm = c_method(PCGRAD_METHOD_PCGRAD, &mut fs);
    fm.config = &cfg;
    let (s, got) = aggregate_vars_c(&vm, &g, t, &[], S);
    assert_eq!(s, PCGRAD_OK);
    let (s, want) = aggregate_flat_masked(&fm, &g, t, &[], N);
    assert_eq!(s, PCGRAD_OK);
    assert_eq!(bits32(&got), bits32(&want));
    // The sum differs from the default mean: the config was used.
    let mut ds = State::new(t);
    let (_, mean) = aggregate_vars_c(&c_method(PCGRAD_METHOD_PCGRAD, &mut ds), &g, t, &[], S);
    assert_ne!(bits32(&got), bits32(&mean));
    g[N + 2] = f32::NAN;
    let (s, out) = aggregate_vars_c(&vm, &g, t, &[], S);
    assert_eq!(s, PCGRAD_ERROR_NON_FINITE);
    assert!(out.iter().all(|x| x.to_bits() == SENT32.to_bits()));
}

/// The size queries check the kind and the Aligned-MTL scale too, and
/// write nothing when they refuse.
#[test]
fn size_queries_refuse_bad_enums() {
    let mut st = State::new(2);
    let mut bad_kind = c_method(PCGRAD_METHOD_RANDOM + 1, &mut st);
    bad_kind.kind = PCGRAD_METHOD_RANDOM + 1;
    let mut bad_scale = c_method(PCGRAD_METHOD_ALIGNED_MTL, &mut st);
    bad_scale.scale = PCGRAD_ALIGNED_SCALE_MEAN + 1;
    for m in [bad_kind, bad_scale] {
        for aggregate in [false, true] {
            let mut n = 777usize;
            // SAFETY: both pointers are live locals.
            let s = unsafe {
                if aggregate {
                    pcgrad_aggregate_workspace_len(&m, 2, &mut n)
                } else {
                    pcgrad_method_workspace_len(&m, 2, &mut n)
                }
            };
            assert_eq!(
                s, PCGRAD_ERROR_INVALID_ENUM,
                "kind {} scale {}",
                m.kind, m.scale
            );
            assert_eq!(n, 777);
        }
    }
}
