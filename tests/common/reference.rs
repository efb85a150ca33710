//! An independent `f64` reference: a straight transcription of the normative
//! semantics (docs/architecture.md, section 1) with direct loops over the coordinates. It
//! forms every dot product afresh from the vectors (no Gram-matrix trick), so
//! it shares no arithmetic structure with the library's fast path.

/// The projection mode of the reference.
#[derive(Clone, Debug)]
pub enum RefMode {
    /// The paper's Algorithm 1: `orders[i]` lists the tasks j != i in the
    /// order task i visits them; dot products use the running projection.
    Sequential(Vec<Vec<usize>>),
    /// Every dot product uses the task's original gradient.
    Simultaneous,
}

/// One problem: T tasks, N coordinates cut into segments, a T x S mask.
#[derive(Clone, Debug)]
pub struct Problem {
    /// T.
    pub tasks: usize,
    /// N.
    pub dim: usize,
    /// Segment lengths summing to N (empty = one segment of length N).
    pub segments: Vec<usize>,
    /// Row-major T x S: whether task t has a gradient for segment s (empty =
    /// all true).
    pub has_grad: Vec<bool>,
    /// Row-major T x N gradients. Values on masked segments are ignored (the
    /// reference treats them as zero, as the semantics say).
    pub grads: Vec<f64>,
}

/// What the reference computes.
#[derive(Clone, Debug)]
pub struct RefOutput {
    /// Row-major T x N projected gradients g'_i (over every coordinate,
    /// including segments a task has no gradient for).
    pub projected: Vec<f64>,
    /// The merged gradient (N values).
    pub merged: Vec<f64>,
    /// The T x T Gram matrix of the (masked) inputs, row-major.
    pub gram: Vec<f64>,
    /// Unordered pairs i < j with g_i . g_j < 0.
    pub conflicting_pairs: usize,
    /// Projections applied.
    pub projections: usize,
    /// How far the sign decisions ("is this dot product negative?") are
    /// from a tie: the smallest |d| / (s |g_j|) over the decisions with
    /// g_j != 0, where s bounds the magnitude of the terms that make up the
    /// left operand (|g_i| plus |c| |g_k| for every projection applied to it
    /// so far), so a left operand that cancelled to (nearly) zero counts as
    /// a tie. Decisions on an all-zero g_i are exact and skipped. 1.0 when
    /// there was no decision.
    pub margin: f64,
}

impl Problem {
    /// The number of segments S (at least 1).
    pub fn num_segments(&self) -> usize {
        self.segments.len().max(1)
    }

    /// The length of segment s.
    pub fn segment_len(&self, s: usize) -> usize {
        if self.segments.is_empty() {
            self.dim
        } else {
            self.segments[s]
        }
    }

    /// Whether task t has a gradient for segment s.
    pub fn has(&self, t: usize, s: usize) -> bool {
        self.has_grad.is_empty() || self.has_grad[t * self.num_segments() + s]
    }

    /// For each coordinate, its segment index.
    pub fn segment_of(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.dim);
        for s in 0..self.num_segments() {
            out.extend(std::iter::repeat_n(s, self.segment_len(s)));
        }
        assert_eq!(out.len(), self.dim, "segments do not sum to N");
        out
    }

    /// Task t's gradient as a vector in R^N: zero where the task has no
    /// gradient.
    pub fn gradient(&self, t: usize) -> Vec<f64> {
        let seg = self.segment_of();
        (0..self.dim)
            .map(|n| {
                if self.has(t, seg[n]) {
                    self.grads[t * self.dim + n]
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// The dot product a . b over all coordinates.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for n in 0..a.len() {
        s += a[n] * b[n];
    }
    s
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Runs PCGrad on `p` as docs/architecture.md (section 1) defines it. `mean` selects the
/// `mean` reduction (1/T on shared coordinates, 1 elsewhere); otherwise
/// `sum`.
pub fn reference(p: &Problem, mode: &RefMode, mean: bool) -> RefOutput {
    let t = p.tasks;
    let n = p.dim;
    let g: Vec<Vec<f64>> = (0..t).map(|i| p.gradient(i)).collect();

    let mut gram = vec![0.0; t * t];
    let mut conflicting_pairs = 0;
    for i in 0..t {
        for j in 0..t {
            gram[i * t + j] = dot(&g[i], &g[j]);
            if i < j && gram[i * t + j] < 0.0 {
                conflicting_pairs += 1;
            }
        }
    }

    let mut projections = 0;
    let mut margin: f64 = 1.0;
    let mut projected = vec![0.0; t * n];
    for i in 0..t {
        let mut pi = g[i].clone();
        let mut scale_p = norm(&g[i]);
        let visits: Vec<usize> = match mode {
            RefMode::Sequential(orders) => {
                let o = &orders[i];
                assert_eq!(o.len(), t - 1, "order of task {i} has the wrong length");
                o.clone()
            }
            RefMode::Simultaneous => (0..t).filter(|&j| j != i).collect(),
        };
        for j in visits {
            assert!(j != i && j < t, "bad order entry");
            // Sequential: the dot product with the already projected p.
            // Simultaneous: with the original g_i.
            let lhs: &[f64] = match mode {
                RefMode::Sequential(_) => &pi,
                RefMode::Simultaneous => &g[i],
            };
            let d = dot(lhs, &g[j]);
            let nj2 = dot(&g[j], &g[j]);
            let s_lhs = match mode {
                RefMode::Sequential(_) => scale_p,
                RefMode::Simultaneous => norm(&g[i]),
            };
            let scale = s_lhs * nj2.sqrt();
            if scale > 0.0 {
                margin = margin.min(d.abs() / scale);
            }
            // |g_j| = 0 gives d = 0: no projection, never a division by zero.
            if d < 0.0 && nj2 > 0.0 {
                let c = d / nj2;
                scale_p += c.abs() * nj2.sqrt();
                for k in 0..n {
                    pi[k] -= c * g[j][k];
                }
                projections += 1;
            }
        }
        projected[i * n..(i + 1) * n].copy_from_slice(&pi);
    }

    let seg = p.segment_of();
    let mut merged = vec![0.0; n];
    for k in 0..n {
        let shared = (0..t).all(|i| p.has(i, seg[k]));
        let w = if mean && shared { 1.0 / t as f64 } else { 1.0 };
        let mut s = 0.0;
        for i in 0..t {
            s += projected[i * n + k];
        }
        merged[k] = w * s;
    }

    RefOutput {
        projected,
        merged,
        gram,
        conflicting_pairs,
        projections,
        margin,
    }
}

/// Ascending visiting orders (the `fixed` order).
pub fn fixed_orders(tasks: usize) -> Vec<Vec<usize>> {
    (0..tasks)
        .map(|i| (0..tasks).filter(|&j| j != i).collect())
        .collect()
}

/// Flattens per-task orders into the library's T x (T - 1) `u32` table.
pub fn order_table(orders: &[Vec<usize>]) -> Vec<u32> {
    orders.iter().flatten().map(|&j| j as u32).collect()
}

/// The largest |x| of a slice (0 for an empty one).
pub fn max_abs(xs: &[f64]) -> f64 {
    xs.iter().fold(0.0, |m, &x| m.max(x.abs()))
}

/// The first index where |got - want| > tol, with both values.
pub fn first_mismatch(got: &[f64], want: &[f64], tol: f64) -> Option<(usize, f64, f64)> {
    assert_eq!(got.len(), want.len(), "length differs");
    got.iter()
        .zip(want)
        .enumerate()
        .find(|(_, (&g, &w))| {
            let e = (g - w).abs();
            g != w && (e.is_nan() || e > tol)
        })
        .map(|(k, (&g, &w))| (k, g, w))
}
