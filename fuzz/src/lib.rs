//! What the fuzz targets share: a reader that turns the fuzzer's bytes into
//! choices, float generators biased towards the special values, an arena
//! that puts every buffer of a call between guard regions, and the checks of
//! a result against the `f64` reference of `tests/common/reference.rs`.

#![allow(clippy::missing_safety_doc)]

/// The shared test code of the core crate (the `f64` reference, the direct-loop
/// implementation, the shuffled-order draw), shared as source.
#[path = "../../tests/common/mod.rs"]
pub mod common;

/// The C ABI: the only import of it, so that moving it behind a Cargo
/// feature changes only the dependency line of Cargo.toml.
pub use pcgrad::ffi::*;

use common::reference::{self, max_abs, Problem, RefMode, RefOutput};
use pcgrad::Rng;

/// Largest |input| at which a result of the **merged** path
/// (`pcgrad_merge_flat`, `pcgrad_merge_vars`, `pcgrad_apply_merged_flat`,
/// `PcGrad::merge`) is compared with the reference: the whole f32 range.
///
/// It was 1e37 while the merged path summed the tasks in f32 and returned
/// +-inf or NaN with status OK for finite inputs near `f32::MAX` (T = 2,
/// rows `[3e38, 1e37]` and `[-3e38, 1e37]`, issue 13). The merged apply
/// now sums every coordinate in f64 and rounds once, as the projected path
/// does (`tests/fidelity.rs` holds the reproducers), so no input is
/// excluded any more; the constant stays as the one place to change
/// should a path ever need a narrower range again.
pub const MERGED_PATH_MAX_ABS: f64 = f32::MAX as f64;

/// The Gram matrix's error bound relative to sqrt(G_ii G_jj): 257 units
/// of f32 rounding (2^-24), from f32 accumulation within a block of 256
/// columns (see `check_matrix`).
pub const GRAM_BLOCK_REL: f64 = 257.0 / (1u64 << 24) as f64;

/// Results must be within this fraction of the largest input (or
/// reference output) magnitude of the float64 reference.
pub const REL_TOL: f64 = 1e-5;

/// Added to the tolerance: results in the f32 subnormal range are held
/// only to a multiple of its spacing (2^-149 = 1.4e-45), whatever the
/// relative tolerance says (one rounding per task and per reduction).
pub const SUBNORMAL_SLACK: f64 = 64.0 * 1.401298464324817e-45;

/// Values are only compared when every sign decision of the reference is at
/// least this far from a tie (`RefOutput::margin`): nearer, f32 inputs and
/// f64 sums in another order may legitimately decide the other way.
pub const MIN_MARGIN: f64 = 1e-5;

// ---------------------------------------------------------------------------
// Choices from bytes.

/// Reads the fuzzer's input as a stream of choices; past its end every read
/// is 0 (so a short input means "no mutation, smallest shape").
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
    /// One byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let v = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v
    }
    /// Two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    /// Four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// Eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }
    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.u16() as usize % n
    }
    /// One bit.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// True with probability 1/k (never past the end of the input).
    pub fn chance(&mut self, k: u8) -> bool {
        self.u8() % k == k - 1
    }
}

/// Special f32 values: the dictionary's floats.
pub const SPECIAL: [f32; 24] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -3.0,
    f32::MAX,
    -f32::MAX,
    3e38,
    -3e38,
    2e38,
    1e37,
    1e30,
    -1e30,
    1e-30,
    -1e-30,
    f32::MIN_POSITIVE,
    1e-45,
    -1e-45,
    f32::EPSILON,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    16777217.0,
];

/// Magnitudes a problem's values are drawn at (times up to 16).
pub const SCALES: [f32; 8] = [1.0, 1e-3, 1e-30, 1e30, 1e-40, 6e35, 2.1e37, 1e3];

/// One value at `scale`: mostly small multiples of it, sometimes a special
/// value or raw bits.
pub fn value(b: &mut Bytes, scale: f32) -> f32 {
    match b.u8() {
        0..=11 => SPECIAL[b.below(SPECIAL.len())],
        12..=19 => f32::from_bits(b.u32()),
        _ => (b.u8() as i8) as f32 / 8.0 * scale,
    }
}

/// A problem's shape: T, N, segments (explicit or not), mask.
#[derive(Clone, Debug)]
pub struct Shape {
    /// T.
    pub tasks: usize,
    /// N.
    pub dim: usize,
    /// Segment lengths (empty: one segment of N).
    pub segments: Vec<usize>,
    /// T x S, row-major (empty: all true).
    pub has_grad: Vec<bool>,
}

impl Shape {
    /// S.
    pub fn num_segments(&self) -> usize {
        self.segments.len().max(1)
    }
    /// Whether task t has its gradient on coordinate k.
    pub fn present(&self, t: usize, k: usize) -> bool {
        if self.has_grad.is_empty() {
            return true;
        }
        let mut s = 0;
        let mut end = 0;
        for (i, &len) in self.segments.iter().enumerate() {
            end += len;
            if k < end {
                s = i;
                break;
            }
        }
        self.has_grad[t * self.num_segments() + s]
    }
}

/// A shape with T in 1..=max_t, N in 0..=max_n.
pub fn shape(b: &mut Bytes, max_t: usize, max_n: usize) -> Shape {
    let tasks = 1 + b.below(max_t);
    let dim = match b.u8() % 4 {
        0 => b.below(9),
        1 => b.below(max_n + 1),
        2 => [7, 8, 9, 15, 16, 17, 31, 32, 33, 255, 256, 257][b.below(12)].min(max_n),
        _ => b.below(40.min(max_n) + 1),
    };
    let mut segments = Vec::new();
    if b.bool() {
        let mut left = dim;
        let s = 1 + b.below(4);
        for i in 0..s {
            let len = if i + 1 == s { left } else { b.below(left + 1) };
            segments.push(len);
            left -= len;
        }
    }
    let mut has_grad = Vec::new();
    if b.bool() {
        let s = segments.len().max(1);
        has_grad = (0..tasks * s).map(|_| !b.chance(3)).collect();
    }
    Shape {
        tasks,
        dim,
        segments,
        has_grad,
    }
}

/// T x N values for `sh`: independent, nearly collinear (rank one plus
/// small noise: cancellation), identical or opposite rows. Masked cells
/// get values too (NaN among them), which the library must never read.
pub fn grads(b: &mut Bytes, sh: &Shape) -> Vec<f32> {
    let (t, n) = (sh.tasks, sh.dim);
    let scale = SCALES[b.below(SCALES.len())];
    let style = b.u8() % 4;
    let base: Vec<f32> = if style == 0 {
        Vec::new()
    } else {
        (0..n).map(|_| value(b, scale)).collect()
    };
    let mut out = Vec::with_capacity(t * n);
    for _ in 0..t {
        let a = if style == 1 || style == 3 {
            (b.u8() as i8) as f32 / 64.0
        } else {
            1.0
        };
        for k in 0..n {
            out.push(match style {
                0 => value(b, scale),
                1 => a * base[k] + (b.u8() as i8) as f32 / 1024.0 * scale,
                2 => base[k],
                _ => a * base[k],
            });
        }
    }
    out
}

/// The input header every target starts with: a shape and its values.
/// (`make_seeds.py` writes it for the conformance vectors.)
pub fn problem_input(b: &mut Bytes, max_t: usize, max_n: usize) -> (Shape, Vec<f32>) {
    let sh = shape(b, max_t, max_n);
    let g = grads(b, &sh);
    (sh, g)
}

/// The reference problem of f32 values on a shape.
pub fn problem(sh: &Shape, g: &[f32]) -> Problem {
    Problem {
        tasks: sh.tasks,
        dim: sh.dim,
        segments: sh.segments.clone(),
        has_grad: sh.has_grad.clone(),
        grads: g.iter().map(|&x| x as f64).collect(),
    }
}

/// Whether every value a task has a gradient for is finite.
pub fn finite_inputs(sh: &Shape, g: &[f32]) -> bool {
    (0..sh.tasks).all(|t| (0..sh.dim).all(|k| !sh.present(t, k) || g[t * sh.dim + k].is_finite()))
}

/// The visiting orders of a sequential call (None: simultaneous).
#[derive(Clone, Debug)]
pub enum Orders {
    /// Ascending.
    Fixed,
    /// A T x (T - 1) table.
    Explicit(Vec<u32>),
    /// Drawn from the PRNG state.
    Shuffled(u64),
    /// Simultaneous mode.
    Simultaneous,
}

impl Orders {
    /// The reference mode, and the PRNG state the call must leave.
    pub fn reference(&self, tasks: usize) -> (RefMode, Option<u64>) {
        match self {
            Orders::Fixed => (RefMode::Sequential(reference::fixed_orders(tasks)), None),
            Orders::Explicit(table) => (
                RefMode::Sequential(
                    (0..tasks)
                        .map(|i| {
                            table[i * (tasks - 1)..(i + 1) * (tasks - 1)]
                                .iter()
                                .map(|&j| j as usize)
                                .collect()
                        })
                        .collect(),
                ),
                None,
            ),
            Orders::Shuffled(state) => {
                let mut rng = Rng { state: *state };
                let orders = common::shuffled_orders(tasks, &mut rng);
                (RefMode::Sequential(orders), Some(rng.state))
            }
            Orders::Simultaneous => (RefMode::Simultaneous, None),
        }
    }
}

/// A valid explicit order table: each row the other tasks in an order the
/// bytes choose.
pub fn order_table(b: &mut Bytes, tasks: usize) -> Vec<u32> {
    let mut table = Vec::new();
    for i in 0..tasks {
        let mut row: Vec<u32> = (0..tasks as u32).filter(|&j| j as usize != i).collect();
        for k in (1..row.len()).rev() {
            row.swap(k, b.below(k + 1));
        }
        table.extend(row);
    }
    table
}

// ---------------------------------------------------------------------------
// Guarded buffers.

/// Bytes of guard before each buffer (and the alignment of each buffer).
pub const GUARD: usize = 64;
/// What the guard bytes (and every unused byte of the arena) hold.
pub const PATTERN: u8 = 0xA5;

/// One allocation holding every buffer of a call, each starting 64-byte
/// aligned after a [`GUARD`] of [`PATTERN`] bytes, with a tail as large as
/// the largest buffer, so a pointer moved into another buffer (an overlap
/// test) still points inside the arena for its whole length.
pub struct Arena {
    mem: Vec<u64>,
    bufs: Vec<(usize, usize)>,
    end: usize,
}

/// A buffer of an [`Arena`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf(pub usize);

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

impl Arena {
    /// An empty arena (plan buffers with [`Arena::alloc`], then
    /// [`Arena::finish`]).
    pub fn new() -> Self {
        Arena {
            mem: Vec::new(),
            bufs: Vec::new(),
            end: 0,
        }
    }
    /// Plans a buffer of `bytes` bytes.
    pub fn alloc(&mut self, bytes: usize) -> Buf {
        let off = (self.end + GUARD).next_multiple_of(GUARD);
        self.bufs.push((off, bytes));
        self.end = off + bytes;
        Buf(self.bufs.len() - 1)
    }
    /// Allocates the planned buffers, every byte [`PATTERN`].
    pub fn finish(&mut self) {
        let largest = self.bufs.iter().map(|b| b.1).max().unwrap_or(0);
        let total = self.end + GUARD + largest + GUARD;
        let word = u64::from_ne_bytes([PATTERN; 8]);
        self.mem = vec![word; total.div_ceil(8)];
    }
    /// The address of byte `at` of `buf`.
    pub fn ptr<T>(&mut self, buf: Buf, at: usize) -> *mut T {
        let off = self.bufs[buf.0].0 + at;
        // SAFETY: `off` is inside the allocation (buffers and the tail).
        unsafe { self.mem.as_mut_ptr().cast::<u8>().add(off).cast() }
    }
    /// Byte offset and length of a buffer in the arena.
    pub fn span(&self, buf: Buf) -> (usize, usize) {
        self.bufs[buf.0]
    }
    /// The arena byte range of a region (address, bytes) of a call; empty
    /// for NULL or outside the arena.
    pub fn span_of(&self, addr: usize, bytes: usize) -> (usize, usize) {
        let base = self.mem.as_ptr() as usize;
        if addr < base || addr >= base + self.mem.len() * 8 {
            return (0, 0);
        }
        (addr - base, bytes)
    }

    /// The arena byte ranges of the output regions of a call.
    pub fn outputs(&self, regions: &[(usize, usize, bool)]) -> Vec<(usize, usize)> {
        regions
            .iter()
            .filter(|r| r.2)
            .map(|r| self.span_of(r.0, r.1))
            .collect()
    }

    /// Every byte of the arena.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: u64 storage viewed as its bytes.
        unsafe { core::slice::from_raw_parts(self.mem.as_ptr().cast(), self.mem.len() * 8) }
    }
    /// Writes `vals` at the start of `buf`.
    pub fn write<T: Copy>(&mut self, buf: Buf, vals: &[T]) {
        assert!(core::mem::size_of_val(vals) <= self.bufs[buf.0].1);
        let p = self.ptr::<T>(buf, 0);
        // SAFETY: `buf` holds at least that many bytes; the arena's buffers
        // are 64-byte aligned.
        unsafe { core::ptr::copy_nonoverlapping(vals.as_ptr(), p, vals.len()) }
    }
    /// Reads `n` values of type T from the start of `buf`.
    pub fn read<T: Copy>(&mut self, buf: Buf, n: usize) -> Vec<T> {
        assert!(n * core::mem::size_of::<T>() <= self.bufs[buf.0].1);
        let p = self.ptr::<T>(buf, 0);
        // SAFETY: as `write`; every T read here is a plain number type.
        (0..n).map(|i| unsafe { p.add(i).read() }).collect()
    }
    /// A copy of every byte.
    pub fn snapshot(&self) -> Vec<u8> {
        self.bytes().to_vec()
    }
    /// Panics if a byte outside the `allowed` byte ranges differs from
    /// `before`, naming the buffer (or guard) it is in.
    pub fn assert_unchanged(&self, before: &[u8], allowed: &[(usize, usize)], what: &str) {
        let now = self.bytes();
        for (i, (&a, &b)) in before.iter().zip(now).enumerate() {
            if a != b && !allowed.iter().any(|&(lo, len)| i >= lo && i < lo + len) {
                let place = self
                    .bufs
                    .iter()
                    .position(|&(lo, len)| i >= lo && i < lo + len)
                    .map_or("a guard region".to_string(), |k| format!("buffer {k}"));
                panic!("{what}: byte {i} ({place}) changed from {a:#04x} to {b:#04x}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Checks against the reference.

/// The reference result of one call and what may be compared.
pub struct Expect {
    /// The reference output.
    pub r: RefOutput,
    /// max |input|.
    pub max_in: f64,
    /// max(|input|, |reference outputs|): the tolerance's scale.
    pub scale: f64,
    /// Every value a task has is finite.
    pub finite: bool,
    /// The PRNG state a shuffled call must leave.
    pub rng_after: Option<u64>,
}

/// The smallest |cos| between two non-zero inputs.
pub fn pair_margin(r: &RefOutput, t: usize) -> f64 {
    let mut m: f64 = 1.0;
    for i in 0..t {
        for j in i + 1..t {
            let s = (r.gram[i * t + i] * r.gram[j * t + j]).sqrt();
            if s > 0.0 {
                m = m.min(r.gram[i * t + j].abs() / s);
            }
        }
    }
    m
}

impl Expect {
    /// The reference for `g` on `sh` in `orders`.
    pub fn new(sh: &Shape, g: &[f32], orders: &Orders, mean: bool) -> Expect {
        let p = problem(sh, g);
        let finite = finite_inputs(sh, g);
        let (mode, rng_after) = orders.reference(sh.tasks);
        let masked: Vec<f64> = (0..sh.tasks).flat_map(|t| p.gradient(t)).collect();
        let max_in = if finite {
            max_abs(&masked)
        } else {
            f64::INFINITY
        };
        let r = if finite {
            reference::reference(&p, &mode, mean)
        } else {
            // Not compared: only the shape matters.
            RefOutput {
                projected: vec![f64::NAN; sh.tasks * sh.dim],
                merged: vec![f64::NAN; sh.dim],
                gram: vec![f64::NAN; sh.tasks * sh.tasks],
                conflicting_pairs: 0,
                projections: 0,
                margin: 0.0,
            }
        };
        let scale = max_in.max(max_abs(&r.merged)).max(max_abs(&r.projected));
        Expect {
            r,
            max_in,
            scale,
            finite,
            rng_after,
        }
    }

    /// Checks `got` (any subset of coordinates: `idx[k]` is the reference
    /// index of `got[k]`) against `want`. `merged_path`: the result comes
    /// from the merged (f32 accumulation) path, compared only for inputs
    /// up to [`MERGED_PATH_MAX_ABS`].
    pub fn check(&self, what: &str, got: &[f32], want: &[f64], idx: &[usize], merged_path: bool) {
        if !self.finite || (merged_path && self.max_in > MERGED_PATH_MAX_ABS) {
            return;
        }
        // An output a float32 cannot hold is not compared.
        if idx.iter().any(|&i| want[i].abs() > f32::MAX as f64) {
            return;
        }
        for (k, &i) in idx.iter().enumerate() {
            let g = got[k] as f64;
            assert!(
                g.is_finite(),
                "{what}[{i}] = {g:e} for finite inputs (reference {:e}, max |input| {:e})",
                want[i],
                self.max_in
            );
            if self.r.margin >= MIN_MARGIN {
                let tol = REL_TOL * self.scale + SUBNORMAL_SLACK;
                assert!(
                    (g - want[i]).abs() <= tol,
                    "{what}[{i}] = {g:e}, reference {:e}, tolerance {tol:e} (margin {:e})",
                    want[i],
                    self.r.margin
                );
            }
        }
    }

    /// Checks the statistics (where the decisions are not near ties).
    pub fn check_stats(&self, tasks: usize, conflicting_pairs: usize, projections: usize) {
        if !self.finite {
            return;
        }
        if pair_margin(&self.r, tasks) >= MIN_MARGIN {
            assert_eq!(
                conflicting_pairs, self.r.conflicting_pairs,
                "conflicting pairs"
            );
        }
        if self.r.margin >= MIN_MARGIN {
            assert_eq!(projections, self.r.projections, "projections");
        }
    }

    /// Checks a diagnostic matrix (Gram or cosine) against the reference
    /// Gram matrix.
    pub fn check_matrix(&self, tasks: usize, cosine: bool, got: &[f64]) {
        if !self.finite {
            return;
        }
        let g = &self.r.gram;
        for i in 0..tasks {
            for j in 0..tasks {
                let k = i * tasks + j;
                if cosine {
                    let s = (g[i * tasks + i] * g[j * tasks + j]).sqrt();
                    if s > 0.0 && s.is_finite() {
                        let want = g[k] / s;
                        // Each Gram entry is within GRAM_BLOCK_REL of
                        // sqrt(G_ii G_jj) (below), so the cosine is within
                        // GRAM_BLOCK_REL * (1 + |cos|) <= 2 GRAM_BLOCK_REL
                        // to first order.
                        assert!(
                            (got[k] - want).abs() <= 2.0 * GRAM_BLOCK_REL + 1e-12,
                            "cosine[{i}][{j}] = {:e}, reference {want:e}",
                            got[k]
                        );
                    }
                } else {
                    // The Gram pass sums f32 products in f32 within a
                    // column block of 256 (in at most 256 terms per
                    // accumulator, fewer with SIMD lanes), then in f64
                    // across blocks: each entry is within 257 units of f32
                    // rounding of sum_k |x_k y_k| <= sqrt(G_ii G_jj)
                    // (Cauchy-Schwarz) of the exact one.
                    let bound = GRAM_BLOCK_REL * (g[i * tasks + i] * g[j * tasks + j]).sqrt();
                    assert!(
                        (got[k] - g[k]).abs() <= bound,
                        "gram[{i}][{j}] = {:e}, reference {:e}",
                        got[k],
                        g[k]
                    );
                }
            }
        }
    }
}

/// The indices 0..n.
pub fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

// ---------------------------------------------------------------------------
// Pointer and config choices of the C ABI targets.

/// Where an argument's pointer points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ptr {
    /// At its own buffer.
    Own,
    /// NULL.
    Null,
    /// One to three bytes past the start of its own buffer.
    Misaligned(usize),
    /// Into another buffer, at an aligned byte offset: an overlap.
    Into(Buf, usize),
    /// A non-NULL address that must never be read (an unused field).
    Dangling,
}

impl Arena {
    /// The pointer `kind` for a buffer `own` (which may be absent).
    pub fn resolve<T>(&mut self, own: Option<Buf>, kind: Ptr) -> *mut T {
        match (kind, own) {
            (Ptr::Null, _) | (Ptr::Own, None) => core::ptr::null_mut(),
            (Ptr::Own, Some(b)) => self.ptr(b, 0),
            (Ptr::Misaligned(k), Some(b)) => self.ptr(b, k),
            (Ptr::Misaligned(k), None) => k as *mut T,
            (Ptr::Into(o, at), _) => self.ptr(o, at),
            (Ptr::Dangling, _) => core::mem::align_of::<T>() as *mut T,
        }
    }
}

/// Picks how an *output* (or in-place) buffer's pointer is mutated: mostly
/// its own buffer; sometimes NULL, misaligned (when its element is wider
/// than a byte), or moved into one of `others` (an overlap, when both are
/// non-empty). Returns the choice and whether it makes the call invalid
/// (`null_refused`: whether NULL is refused here).
pub fn mutate_ptr(
    b: &mut Bytes,
    arena: &Arena,
    own_bytes: usize,
    align: usize,
    null_refused: bool,
    others: &[Buf],
) -> (Ptr, bool) {
    if !b.chance(6) {
        return (Ptr::Own, false);
    }
    match b.u8() % 3 {
        0 => (Ptr::Null, null_refused),
        1 if align > 1 => (Ptr::Misaligned(1 + b.below(align - 1)), true),
        _ => {
            let cands: Vec<Buf> = others
                .iter()
                .copied()
                .filter(|&o| arena.span(o).1 >= 8)
                .collect();
            if cands.is_empty() || own_bytes == 0 {
                return (Ptr::Own, false);
            }
            let o = cands[b.below(cands.len())];
            let at = 8 * b.below(arena.span(o).1 / 8);
            // Whether it overlaps depends on where the other pointers end
            // up: see `overlaps`.
            (Ptr::Into(o, at), false)
        }
    }
}

/// A length argument: `n`, or one off either way (invalid).
pub fn mutate_len(b: &mut Bytes, n: usize) -> (usize, bool) {
    if !b.chance(8) {
        return (n, false);
    }
    if b.bool() || n == 0 {
        (n + 1, true)
    } else {
        (n - 1, true)
    }
}

/// Whether an output region overlaps any other region of a call. Regions
/// are (address, bytes, is_output); empty and NULL ones never overlap.
pub fn overlaps(regions: &[(usize, usize, bool)]) -> bool {
    let live: Vec<_> = regions.iter().filter(|r| r.0 != 0 && r.1 > 0).collect();
    live.iter().enumerate().any(|(i, a)| {
        live.iter()
            .enumerate()
            .any(|(j, b)| i != j && (a.2 || b.2) && a.0 < b.0 + b.1 && b.0 < a.0 + a.1)
    })
}

/// The choices behind one `pcgrad_config`.
pub struct CfgChoice {
    /// Field values.
    pub mode: u32,
    /// See `pcgrad_config`.
    pub order: u32,
    /// See `pcgrad_config`.
    pub reduction: u32,
    /// See `pcgrad_config`.
    pub check_finite: u32,
    /// See `pcgrad_config`.
    pub matrix: u32,
    /// See `pcgrad_config`.
    pub threads: usize,
    /// The order table's contents (explicit order) and the length passed.
    pub table: Vec<u32>,
    /// Passed as `order_table_len`.
    pub table_len: usize,
    /// Where `order_table` points.
    pub table_ptr: Ptr,
    /// The PRNG state.
    pub rng_state: u64,
    /// Where `rng` points.
    pub rng_ptr: Ptr,
    /// Where the config pointer points.
    pub cfg_ptr: Ptr,
    /// Every choice valid.
    pub valid: bool,
    /// The orders the library must follow (when valid).
    pub orders: Orders,
    /// Buffers, once planned.
    pub bufs: Option<(Buf, Buf, Buf)>,
}

impl CfgChoice {
    /// Draws a config for T tasks: mostly valid, sometimes with an
    /// out-of-range enum or flag, a broken order table, or a NULL or
    /// misaligned config or PRNG.
    pub fn draw(b: &mut Bytes, tasks: usize) -> CfgChoice {
        let mut valid = true;
        let mut field = |b: &mut Bytes, n: u32| {
            if b.chance(20) {
                valid = false;
                n + (b.u32() % (u32::MAX - n))
            } else {
                b.u8() as u32 % n
            }
        };
        let mode = field(b, 2);
        let order = field(b, 3);
        let reduction = field(b, 2);
        let check_finite = field(b, 2);
        let matrix = field(b, 2);
        let threads = b.u8() as usize % 5;
        let seq = mode == PCGRAD_MODE_SEQUENTIAL;
        let uses_rng = seq && order == PCGRAD_ORDER_SHUFFLED;
        let uses_table = seq && order == PCGRAD_ORDER_EXPLICIT;
        let mut table = order_table(b, tasks);
        let good_table = table.clone();
        let mut table_len = table.len();
        let mut table_ptr = if uses_table || b.bool() {
            Ptr::Own
        } else if b.bool() {
            Ptr::Null
        } else {
            Ptr::Dangling
        };
        if uses_table && b.chance(4) {
            match b.u8() % 5 {
                0 if !table.is_empty() => {
                    // An entry out of range, the row's own task, or a
                    // repeat.
                    let k = b.below(table.len());
                    let row = k / (tasks - 1);
                    table[k] = match b.u8() % 3 {
                        0 => tasks as u32 + b.u8() as u32,
                        1 => row as u32,
                        _ => table[row * (tasks - 1) + (k + 1) % (tasks - 1)],
                    };
                    // With T = 2 a repeat is the entry itself.
                    valid &= table == good_table;
                }
                1 => {
                    table_len += 1;
                    valid = false;
                }
                2 if table_len > 0 => {
                    table_len -= 1;
                    valid = false;
                }
                3 => {
                    table_ptr = Ptr::Null;
                    valid &= table_len == 0;
                }
                4 => {
                    // Length 0 (T = 1): absent whatever its pointer (the
                    // header's rule for optional buffers), misaligned
                    // included, as NULL above.
                    table_ptr = Ptr::Misaligned(1 + b.below(3));
                    valid &= table_len == 0;
                }
                _ => {}
            }
        }
        let rng_state = b.u64();
        let rng_ptr = if uses_rng {
            if b.chance(20) {
                valid = false;
                [Ptr::Null, Ptr::Misaligned(1 + b.below(7))][b.below(2)]
            } else {
                Ptr::Own
            }
        } else {
            [Ptr::Own, Ptr::Null, Ptr::Dangling][b.below(3)]
        };
        let cfg_ptr = if b.chance(30) {
            valid = false;
            [Ptr::Null, Ptr::Misaligned(1 + b.below(7))][b.below(2)]
        } else {
            Ptr::Own
        };
        let orders = if !seq {
            Orders::Simultaneous
        } else if uses_rng {
            Orders::Shuffled(rng_state)
        } else if uses_table {
            Orders::Explicit(good_table)
        } else {
            Orders::Fixed
        };
        CfgChoice {
            mode,
            order,
            reduction,
            check_finite,
            matrix,
            threads,
            table,
            table_len,
            table_ptr,
            rng_state,
            rng_ptr,
            cfg_ptr,
            valid,
            orders,
            bufs: None,
        }
    }

    /// Whether the PRNG is read and advanced.
    pub fn uses_rng(&self) -> bool {
        self.mode == PCGRAD_MODE_SEQUENTIAL && self.order == PCGRAD_ORDER_SHUFFLED
    }

    /// Whether the order table is read.
    pub fn uses_table(&self) -> bool {
        self.mode == PCGRAD_MODE_SEQUENTIAL && self.order == PCGRAD_ORDER_EXPLICIT
    }

    /// Plans the config, table and PRNG buffers.
    pub fn plan(&mut self, arena: &mut Arena) {
        let c = arena.alloc(core::mem::size_of::<pcgrad_config>());
        let t = arena.alloc(4 * self.table.len().max(self.table_len));
        let r = arena.alloc(8);
        self.bufs = Some((c, t, r));
    }

    /// Writes the table, the PRNG and the config (after `Arena::finish`);
    /// returns the config pointer.
    pub fn place(&self, arena: &mut Arena) -> *const pcgrad_config {
        let (c, t, r) = self.bufs.expect("planned");
        arena.write(t, &self.table);
        arena.write(r, &[self.rng_state]);
        let raw = pcgrad_config {
            mode: self.mode,
            order: self.order,
            reduction: self.reduction,
            check_finite: self.check_finite,
            matrix: self.matrix,
            threads: self.threads,
            order_table: arena.resolve::<u32>(Some(t), self.table_ptr),
            order_table_len: self.table_len,
            rng: arena.resolve::<Rng>(Some(r), self.rng_ptr),
        };
        arena.write(c, &[raw]);
        arena.resolve::<pcgrad_config>(Some(c), self.cfg_ptr)
    }

    /// The mean reduction.
    pub fn mean(&self) -> bool {
        self.reduction == PCGRAD_REDUCTION_MEAN
    }

    /// The regions the config brings to a call (see [`overlaps`]): the
    /// struct and the order table (inputs), the PRNG (output), as the
    /// library reads them, given the config pointer `cfg`.
    pub fn regions(
        &self,
        arena: &mut Arena,
        cfg: *const pcgrad_config,
    ) -> Vec<(usize, usize, bool)> {
        let (_, t, r) = self.bufs.expect("planned");
        let mut out = vec![(cfg as usize, core::mem::size_of::<pcgrad_config>(), false)];
        if self.uses_table() {
            let p = arena.resolve::<u32>(Some(t), self.table_ptr);
            out.push((p as usize, 4 * self.table_len, false));
        }
        if self.uses_rng() {
            let p = arena.resolve::<u64>(Some(r), self.rng_ptr);
            out.push((p as usize, 8, true));
        }
        out
    }

    /// The PRNG's byte range, written by a successful shuffled call.
    pub fn rng_span(&self, arena: &Arena) -> (usize, usize) {
        arena.span(self.bufs.expect("planned").2)
    }

    /// Checks the PRNG state after a successful call.
    pub fn check_rng(&self, arena: &mut Arena, want: Option<u64>) {
        let r = self.bufs.expect("planned").2;
        let got = arena.read::<u64>(r, 1)[0];
        if self.uses_rng() {
            assert_eq!(Some(got), want, "PRNG state after the call");
        } else {
            assert_eq!(got, self.rng_state, "an unused PRNG changed");
        }
    }
}

/// Checks the status against the expectation: an invalid choice must fail;
/// otherwise `check_finite` with a non-finite input must give
/// `PCGRAD_ERROR_NON_FINITE`, and anything else must succeed.
pub fn check_status(st: pcgrad_status, valid: bool, nonfinite_refused: bool, what: &str) {
    if !valid {
        assert_ne!(
            st,
            pcgrad_status::PCGRAD_OK,
            "{what}: an invalid call succeeded"
        );
    } else if nonfinite_refused {
        assert_eq!(
            st,
            pcgrad_status::PCGRAD_ERROR_NON_FINITE,
            "{what}: non-finite input with check_finite"
        );
    } else {
        assert_eq!(st, pcgrad_status::PCGRAD_OK, "{what}: a valid call failed");
    }
}
