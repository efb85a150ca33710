//! Shared test helpers: the `f64` reference ([`reference`]), the direct-loop
//! `f32` implementation ([`direct`]), and runners that feed a
//! [`reference::Problem`] through each of the library's entry points.

#![allow(dead_code, clippy::needless_range_loop)]

pub mod direct;
pub mod reference;

use pcgrad::{
    workspace_len, Element, Flat, FlatMut, Layout, Mode, Order, PcGrad, PerVariable,
    PerVariableMut, Reduction, Rng, Stats,
};
use reference::{Problem, RefMode};

/// A mode the library runs in, without borrows.
#[derive(Clone, Debug)]
pub enum LibMode {
    /// Sequential, ascending order.
    Fixed,
    /// Sequential, a T x (T - 1) explicit table.
    Explicit(Vec<u32>),
    /// Sequential, shuffled from `Rng::new(seed)`.
    Shuffled(u64),
    /// Simultaneous.
    Simultaneous,
}

/// The reduction for a `mean` flag.
pub fn reduction(mean: bool) -> Reduction {
    if mean {
        Reduction::Mean
    } else {
        Reduction::Sum
    }
}

/// The visiting orders the library draws for a shuffled call: for each task
/// i in turn, the other tasks in ascending order, then a Fisher-Yates
/// shuffle `for k in (1..T-1).rev() { swap(k, rng.below(k + 1)) }` (the draw
/// documented in `engine::coefficients`). Advances `rng` as the library does.
pub fn shuffled_orders(tasks: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    (0..tasks)
        .map(|i| {
            let mut o: Vec<usize> = (0..tasks).filter(|&j| j != i).collect();
            for k in (1..o.len()).rev() {
                let r = rng.below(k as u32 + 1) as usize;
                o.swap(k, r);
            }
            o
        })
        .collect()
}

/// The reference mode equivalent to a library mode.
pub fn ref_mode(tasks: usize, mode: &LibMode) -> RefMode {
    match mode {
        LibMode::Fixed => RefMode::Sequential(reference::fixed_orders(tasks)),
        LibMode::Explicit(table) => RefMode::Sequential(
            (0..tasks)
                .map(|i| {
                    table[i * (tasks - 1)..(i + 1) * (tasks - 1)]
                        .iter()
                        .map(|&j| j as usize)
                        .collect()
                })
                .collect(),
        ),
        LibMode::Shuffled(seed) => {
            RefMode::Sequential(shuffled_orders(tasks, &mut Rng::new(*seed)))
        }
        LibMode::Simultaneous => RefMode::Simultaneous,
    }
}

/// Calls `f` with a configured `PcGrad` for `mode`.
pub fn with_pcgrad<R>(mode: &LibMode, mean: bool, f: impl FnOnce(&mut PcGrad<'_>) -> R) -> R {
    let mut rng;
    let m = match mode {
        LibMode::Fixed => Mode::Sequential(Order::Fixed),
        LibMode::Explicit(table) => Mode::Sequential(Order::Explicit(table)),
        LibMode::Shuffled(seed) => {
            rng = Rng::new(*seed);
            Mode::Sequential(Order::Shuffled(&mut rng))
        }
        LibMode::Simultaneous => Mode::Simultaneous,
    };
    let mut pc = PcGrad::with_mode(m).reduction(reduction(mean));
    f(&mut pc)
}

/// The problem's gradients in element type F (masked values as given).
pub fn grads_as<F: Element>(p: &Problem) -> Vec<F> {
    p.grads.iter().map(|&x| F::from_f64(x)).collect()
}

fn to_f64<F: Element>(xs: &[F]) -> Vec<f64> {
    xs.iter().map(|&x| Element::to_f64(x)).collect()
}

/// What a library run produced, widened to `f64`.
#[derive(Clone, Debug)]
pub struct LibOutput {
    /// The merged gradient.
    pub merged: Vec<f64>,
    /// The projected gradients (T x N) when the path writes them; for the
    /// per-variable path, masked cells keep their input values.
    pub projected: Option<Vec<f64>>,
    /// The call's statistics.
    pub stats: Stats,
    /// The workspace after the call.
    pub workspace: Vec<f64>,
}

/// The flat read-only path: `PcGrad::merge` over a `Flat`.
pub fn run_merge<F: Element>(p: &Problem, mode: &LibMode, mean: bool) -> LibOutput {
    let g = grads_as::<F>(p);
    let layout = Layout::new(p.tasks, p.dim, &p.segments, &p.has_grad).expect("layout");
    let flat = Flat::new(layout, &g).expect("flat");
    let mut merged = vec![F::zero(); p.dim];
    let mut ws = vec![0.0f64; workspace_len(p.tasks).expect("workspace_len")];
    let stats =
        with_pcgrad(mode, mean, |pc| pc.merge(&flat, &mut merged, &mut ws)).expect("merge failed");
    LibOutput {
        merged: to_f64(&merged),
        projected: None,
        stats,
        workspace: ws,
    }
}

/// The flat in-place path: `PcGrad::project` over a `FlatMut`, with the
/// merged output requested.
pub fn run_project<F: Element>(p: &Problem, mode: &LibMode, mean: bool) -> LibOutput {
    let mut g = grads_as::<F>(p);
    let layout = Layout::new(p.tasks, p.dim, &p.segments, &p.has_grad).expect("layout");
    let mut merged = vec![F::zero(); p.dim];
    let mut ws = vec![0.0f64; workspace_len(p.tasks).expect("workspace_len")];
    let stats = {
        let mut flat = FlatMut::new(layout, &mut g).expect("flat");
        with_pcgrad(mode, mean, |pc| {
            pc.project(&mut flat, Some(&mut merged), &mut ws)
        })
        .expect("project failed")
    };
    LibOutput {
        merged: to_f64(&merged),
        projected: Some(to_f64(&g)),
        stats,
        workspace: ws,
    }
}

/// Splits a flat T x N buffer into per-(task, variable) owned buffers, `None`
/// where the task has no gradient.
pub fn split_vars<F: Element>(p: &Problem, flat: &[F]) -> Vec<Option<Vec<F>>> {
    let s = p.num_segments();
    let mut out = Vec::with_capacity(p.tasks * s);
    for t in 0..p.tasks {
        let mut start = 0;
        for v in 0..s {
            let len = p.segment_len(v);
            let base = t * p.dim + start;
            out.push(p.has(t, v).then(|| flat[base..base + len].to_vec()));
            start += len;
        }
    }
    out
}

/// The segment lengths as the per-variable API wants them (one explicit
/// length even when the problem uses the "one segment" shorthand).
pub fn explicit_segments(p: &Problem) -> Vec<usize> {
    (0..p.num_segments()).map(|s| p.segment_len(s)).collect()
}

/// The per-variable read-only path: `PcGrad::merge` over a `PerVariable`.
pub fn run_per_variable<F: Element>(p: &Problem, mode: &LibMode, mean: bool) -> LibOutput {
    let g = grads_as::<F>(p);
    let owned = split_vars(p, &g);
    let vars: Vec<Option<&[F]>> = owned.iter().map(|v| v.as_deref()).collect();
    let segments = explicit_segments(p);
    let mut mask = vec![false; vars.len()];
    let pv = PerVariable::new(p.tasks, &segments, &vars, &mut mask).expect("per-variable");
    let mut merged = vec![F::zero(); p.dim];
    let mut ws = vec![0.0f64; workspace_len(p.tasks).expect("workspace_len")];
    let stats =
        with_pcgrad(mode, mean, |pc| pc.merge(&pv, &mut merged, &mut ws)).expect("merge failed");
    LibOutput {
        merged: to_f64(&merged),
        projected: None,
        stats,
        workspace: ws,
    }
}

/// The per-variable in-place path: `PcGrad::project` over a
/// `PerVariableMut`. The returned projected matrix holds the written cells
/// and, for cells without a buffer, zeros.
pub fn run_per_variable_project<F: Element>(p: &Problem, mode: &LibMode, mean: bool) -> LibOutput {
    let g = grads_as::<F>(p);
    let mut owned = split_vars(p, &g);
    let segments = explicit_segments(p);
    let mut merged = vec![F::zero(); p.dim];
    let mut ws = vec![0.0f64; workspace_len(p.tasks).expect("workspace_len")];
    let stats = {
        let mut vars: Vec<Option<&mut [F]>> = owned.iter_mut().map(|v| v.as_deref_mut()).collect();
        let mut mask = vec![false; vars.len()];
        let mut pv =
            PerVariableMut::new(p.tasks, &segments, &mut vars, &mut mask).expect("per-variable");
        with_pcgrad(mode, mean, |pc| {
            pc.project(&mut pv, Some(&mut merged), &mut ws)
        })
        .expect("project failed")
    };
    let mut projected = vec![0.0; p.tasks * p.dim];
    let s = p.num_segments();
    for t in 0..p.tasks {
        let mut start = 0;
        for v in 0..s {
            let len = p.segment_len(v);
            if let Some(buf) = &owned[t * s + v] {
                for k in 0..len {
                    projected[t * p.dim + start + k] = Element::to_f64(buf[k]);
                }
            }
            start += len;
        }
    }
    LibOutput {
        merged: to_f64(&merged),
        projected: Some(projected),
        stats,
        workspace: ws,
    }
}

/// Zeroes the projected reference on cells a per-variable path has no
/// buffer for (it writes nothing there).
pub fn mask_projected(p: &Problem, projected: &[f64]) -> Vec<f64> {
    let seg = p.segment_of();
    let mut out = projected.to_vec();
    for t in 0..p.tasks {
        for n in 0..p.dim {
            if !p.has(t, seg[n]) {
                out[t * p.dim + n] = 0.0;
            }
        }
    }
    out
}
