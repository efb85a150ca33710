//! The demo: a small multi-task network trained on synthetic data whose tasks
//! conflict, once with plain gradient summing, once with each PCGrad mode, and
//! once with each Gram-based method of `pcgrad::methods` (MGDA, UPGrad,
//! DualProj, CAGrad, IMTL-G, Aligned-MTL, Nash-MTL, GradVac, mean, random
//! weighting) through `methods::aggregate`.
//!
//! The network has a shared trunk (tanh layer) and one linear head per task;
//! each head gets a gradient only from its own task, so the per-task
//! gradients have masked segments (the seed's `has_grads`). Three regression
//! tasks read the same inputs: task 1 wants roughly the opposite features of
//! task 0, and task 2 has a loss ten times larger. Everything runs in `f32`
//! with the library's flat in-place API and one caller workspace.
//!
//! Run: `cargo run --release --example multitask`

use pcgrad::methods::{self, aggregate, aggregate_workspace_len, NashState};
use pcgrad::{workspace_len, Flat, FlatMut, Layout, Mode, PcGrad, PpcGrad, Reduction, Rng, Stats};

const D: usize = 8; // inputs
const H: usize = 12; // shared hidden units
const T: usize = 3; // tasks
const BATCH: usize = 32;
const STEPS: usize = 3000;
const LR: f32 = 0.02;
const TEST: usize = 2048;

// Parameter segments: trunk W (H x D), trunk bias (H), then one head per task
// (H weights + 1 bias).
const SEGMENTS: [usize; 2 + T] = [H * D, H, H + 1, H + 1, H + 1];
const N: usize = H * D + H + T * (H + 1);

/// Task targets: smooth functions of shared directions, with task 1 pulling
/// against task 0 and task 2 on a larger scale.
struct Problem {
    u: [f32; D],
    v: [f32; D],
    w: [f32; D],
}

impl Problem {
    fn new(rng: &mut Rng) -> Self {
        let mut dir = || core::array::from_fn(|_| normal(rng) / (D as f32).sqrt());
        Problem {
            u: dir(),
            v: dir(),
            w: dir(),
        }
    }

    fn targets(&self, x: &[f32; D]) -> [f32; T] {
        let dot = |a: &[f32; D]| a.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
        let (u, v, w) = (dot(&self.u), dot(&self.v), dot(&self.w));
        [
            (2.0 * u).sin() + 0.5 * v,
            -(2.0 * u).sin() + 0.5 * v + 0.3 * w,
            3.0 * (u + w).tanh(),
        ]
    }
}

/// Standard normal from the library's PRNG (Box-Muller).
fn normal(rng: &mut Rng) -> f32 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = ((rng.next_u64() >> 11) as f64) / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn input(rng: &mut Rng) -> [f32; D] {
    core::array::from_fn(|_| normal(rng))
}

/// Views of the flat parameter vector.
struct Params<'a>(&'a [f32]);

impl Params<'_> {
    fn w(&self, h: usize, d: usize) -> f32 {
        self.0[h * D + d]
    }
    fn b(&self, h: usize) -> f32 {
        self.0[H * D + h]
    }
    fn head(&self, t: usize) -> &[f32] {
        let o = H * D + H + t * (H + 1);
        &self.0[o..o + H + 1]
    }
}

fn forward(p: &Params<'_>, x: &[f32; D]) -> ([f32; H], [f32; T]) {
    let z: [f32; H] = core::array::from_fn(|h| {
        let s: f32 = (0..D).map(|d| p.w(h, d) * x[d]).sum::<f32>() + p.b(h);
        s.tanh()
    });
    let y = core::array::from_fn(|t| {
        let hd = p.head(t);
        hd[..H].iter().zip(&z).map(|(a, b)| a * b).sum::<f32>() + hd[H]
    });
    (z, y)
}

/// Per-task gradients of the mean squared error over a batch, written into
/// row t of `grads` (T x N); returns the per-task batch losses.
fn task_gradients(params: &[f32], batch: &[([f32; D], [f32; T])], grads: &mut [f32]) -> [f32; T] {
    grads.fill(0.0);
    let p = Params(params);
    let mut loss = [0.0f32; T];
    let scale = 1.0 / batch.len() as f32;
    for (x, y) in batch {
        let (z, out) = forward(&p, x);
        for t in 0..T {
            let e = out[t] - y[t];
            loss[t] += 0.5 * e * e * scale;
            let g = &mut grads[t * N..(t + 1) * N];
            let head = p.head(t);
            let ho = H * D + H + t * (H + 1);
            for h in 0..H {
                g[ho + h] += e * z[h] * scale;
                // Back through the head and tanh into the trunk.
                let dz = e * head[h] * (1.0 - z[h] * z[h]) * scale;
                for d in 0..D {
                    g[h * D + d] += dz * x[d];
                }
                g[H * D + h] += dz;
            }
            g[ho + H] += e * scale;
        }
    }
    loss
}

fn test_losses(params: &[f32], test: &[([f32; D], [f32; T])]) -> [f32; T] {
    let p = Params(params);
    let mut loss = [0.0f32; T];
    for (x, y) in test {
        let (_, out) = forward(&p, x);
        for t in 0..T {
            let e = out[t] - y[t];
            loss[t] += 0.5 * e * e / test.len() as f32;
        }
    }
    loss
}

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Sum,
    PcGrad,
    PpcGrad,
    /// A method of `pcgrad::methods`, by name.
    Gram(&'static str),
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Sum => "plain sum",
            Method::PcGrad => "PCGrad (sequential, shuffled)",
            Method::PpcGrad => "PPCGrad (simultaneous)",
            Method::Gram(name) => name,
        }
    }
}

/// Caller-owned state of the stateful methods.
struct State {
    rng: Rng,
    phi: [f64; T * T],
    alpha: [f64; T],
}

/// The `pcgrad::methods` method of a name, borrowing its state.
fn gram_method<'a>(name: &str, st: &'a mut State) -> methods::Method<'a> {
    use methods::Method as M;
    match name {
        "MGDA" => M::Mgda(Default::default()),
        "UPGrad" => M::UpGrad(Default::default()),
        "DualProj" => M::DualProj(Default::default()),
        "CAGrad (c = 0.4)" => M::CaGrad(Default::default()),
        "IMTL-G" => M::ImtlG(Default::default()),
        "Aligned-MTL" => M::AlignedMtl(Default::default()),
        "Nash-MTL" => M::NashMtl(
            Default::default(),
            NashState {
                alpha: &mut st.alpha,
                // update_every = 1: every call solves, the counter is unused.
                step: 0,
            },
        ),
        "GradVac" => M::GradVac(Default::default(), &mut st.phi, &mut st.rng),
        "mean" => M::Mean,
        _ => M::Random(&mut st.rng),
    }
}

struct Outcome {
    losses: [f32; T],
    steps_with_conflict: usize,
    conflicting_pairs: usize,
    projections: usize,
}

fn train(method: Method, problem: &Problem, test: &[([f32; D], [f32; T])]) -> Outcome {
    // Same initial weights and data stream for every method.
    let mut rng = Rng::new(2024);
    let mut params: Vec<f32> = (0..N).map(|_| 0.5 * normal(&mut rng)).collect();
    let mut data_rng = Rng::new(99);
    let mut order_rng = Rng::new(7);

    let has_grad: Vec<bool> = (0..T)
        .flat_map(|t| (0..SEGMENTS.len()).map(move |s| s < 2 || s - 2 == t))
        .collect();
    let layout = Layout::new(T, N, &SEGMENTS, &has_grad).expect("layout");
    let mut grads = vec![0.0f32; T * N];
    let mut merged = vec![0.0f32; N];
    let mut ws = vec![0.0f64; workspace_len(T).expect("workspace")];
    let mut state = State {
        rng: Rng::new(5),
        phi: [0.0; T * T],
        alpha: [0.0; T],
    };
    let mut method_ws = vec![
        0.0f64;
        aggregate_workspace_len(&methods::Method::Sum, T)
            .expect("workspace")
            .max(workspace_len(T).expect("workspace"))
            + 4 * T * T
            + 16 * T
    ];
    let mut out = Outcome {
        losses: [0.0; T],
        steps_with_conflict: 0,
        conflicting_pairs: 0,
        projections: 0,
    };

    for step in 0..=STEPS {
        if step % 1000 == 0 {
            let l = test_losses(&params, test);
            println!(
                "  step {step:5}  test loss per task: {:.4} {:.4} {:.4}   total {:.4}",
                l[0],
                l[1],
                l[2],
                l.iter().sum::<f32>()
            );
            out.losses = l;
        }
        if step == STEPS {
            break;
        }
        let batch: Vec<_> = (0..BATCH)
            .map(|_| {
                let x = input(&mut data_rng);
                (x, problem.targets(&x))
            })
            .collect();
        task_gradients(&params, &batch, &mut grads);
        // Plain summing is computed here directly; PCGrad and PPCGrad go
        // through the library (projecting the task gradients in place).
        let stats: Stats = match method {
            Method::Sum => {
                merged.fill(0.0);
                for t in 0..T {
                    for (m, g) in merged.iter_mut().zip(&grads[t * N..(t + 1) * N]) {
                        *m += g;
                    }
                }
                // Shared trunk coordinates are averaged, heads summed: the
                // same merge rule as the library's mean reduction.
                for m in &mut merged[..H * D + H] {
                    *m /= T as f32;
                }
                // Only for the conflict statistics; the merged result of this
                // call is discarded.
                let mut scratch = vec![0.0f32; N];
                PpcGrad::new()
                    .merge(
                        &Flat::new(layout, &grads).expect("grads"),
                        &mut scratch,
                        &mut ws,
                    )
                    .expect("pcgrad")
            }
            Method::PcGrad => PcGrad::new(&mut order_rng)
                .reduction(Reduction::Mean)
                .project(
                    &mut FlatMut::new(layout, &mut grads).expect("grads"),
                    Some(&mut merged),
                    &mut ws,
                )
                .expect("pcgrad"),
            Method::PpcGrad => PcGrad::with_mode(Mode::Simultaneous)
                .project(
                    &mut FlatMut::new(layout, &mut grads).expect("grads"),
                    Some(&mut merged),
                    &mut ws,
                )
                .expect("ppcgrad"),
            Method::Gram(name) => {
                let flat = Flat::new(layout, &grads).expect("grads");
                let mut m = gram_method(name, &mut state);
                assert!(method_ws.len() >= aggregate_workspace_len(&m, T).expect("workspace"));
                aggregate(&mut m, &flat, &mut merged, &mut method_ws).expect(name);
                // Conflict statistics only, as for the plain sum.
                let mut scratch = vec![0.0f32; N];
                PpcGrad::new()
                    .merge(&flat, &mut scratch, &mut ws)
                    .expect("pcgrad")
            }
        };
        if stats.conflicting_pairs > 0 {
            out.steps_with_conflict += 1;
        }
        out.conflicting_pairs += stats.conflicting_pairs;
        out.projections += stats.projections;
        for (p, g) in params.iter_mut().zip(&merged) {
            *p -= LR * g;
        }
    }
    out
}

fn main() {
    let mut rng = Rng::new(1);
    let problem = Problem::new(&mut rng);
    let test: Vec<_> = (0..TEST)
        .map(|_| {
            let x = input(&mut rng);
            (x, problem.targets(&x))
        })
        .collect();

    println!(
        "multi-task regression: {T} tasks, shared tanh trunk {D}->{H}, one linear head per task, \
         {N} parameters, batch {BATCH}, SGD lr {LR}, {STEPS} steps"
    );
    let methods = [
        Method::Sum,
        Method::PcGrad,
        Method::PpcGrad,
        Method::Gram("MGDA"),
        Method::Gram("UPGrad"),
        Method::Gram("DualProj"),
        Method::Gram("CAGrad (c = 0.4)"),
        Method::Gram("IMTL-G"),
        Method::Gram("Aligned-MTL"),
        Method::Gram("Nash-MTL"),
        Method::Gram("GradVac"),
        Method::Gram("mean"),
        Method::Gram("random (RLW)"),
    ];
    let mut results = Vec::new();
    for m in methods {
        println!("\n{}:", m.name());
        results.push(train(m, &problem, &test));
    }

    println!("\nsummary (held-out loss after {STEPS} steps; conflicts counted on the task gradients of each step):");
    println!(
        "  {:<32} {:>8} {:>8} {:>8} {:>8}   {:>15} {:>15} {:>11}",
        "method",
        "task 0",
        "task 1",
        "task 2",
        "total",
        "steps w/ confl.",
        "confl. pairs/st",
        "proj./step"
    );
    for (m, r) in methods.iter().zip(&results) {
        println!(
            "  {:<32} {:>8.4} {:>8.4} {:>8.4} {:>8.4}   {:>14.1}% {:>15.2} {:>11.2}",
            m.name(),
            r.losses[0],
            r.losses[1],
            r.losses[2],
            r.losses.iter().sum::<f32>(),
            100.0 * r.steps_with_conflict as f32 / STEPS as f32,
            r.conflicting_pairs as f32 / STEPS as f32,
            if matches!(m, Method::Sum | Method::Gram(_)) {
                0.0
            } else {
                r.projections as f32 / STEPS as f32
            },
        );
    }
}
