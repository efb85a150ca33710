//! The per-variable calls over `double` (`pcgrad_merge_vars_f64`,
//! `pcgrad_project_vars_f64`) and the three phases over per-variable
//! buffers (`pcgrad_gram_vars`, `pcgrad_apply_merged_vars`,
//! `pcgrad_apply_projected_vars` and their `_f64` forms): results against
//! the flat calls and the one call, and their refusals.

use super::*;

/// `pcgrad_merge_vars` and its `_f64` form.
type MergeFn<E> = unsafe extern "C" fn(
    *const pcgrad_config,
    *const *const E,
    usize,
    *const usize,
    usize,
    usize,
    *const *mut E,
    usize,
    *mut pcgrad_stats,
    *mut f64,
    usize,
    *mut f64,
    usize,
) -> pcgrad_status;
/// `pcgrad_project_vars` and its `_f64` form.
type ProjectFn<E> = unsafe extern "C" fn(
    *const pcgrad_config,
    *const *mut E,
    usize,
    *const usize,
    usize,
    usize,
    *const *mut E,
    usize,
    *mut pcgrad_stats,
    *mut f64,
    usize,
    *mut f64,
    usize,
) -> pcgrad_status;
/// `pcgrad_gram_vars` and its `_f64` form.
type GramFn<E> = unsafe extern "C" fn(
    *const *const E,
    usize,
    *const usize,
    usize,
    usize,
    usize,
    usize,
    *mut f64,
    usize,
    *mut f64,
    usize,
) -> pcgrad_status;
/// `pcgrad_apply_merged_vars` (G = `*const E`) and
/// `pcgrad_apply_projected_vars` (G = `*mut E`), and their `_f64` forms.
type ApplyFn<E, G> = unsafe extern "C" fn(
    *const G,
    usize,
    *const usize,
    usize,
    *const f64,
    usize,
    usize,
    u32,
    usize,
    usize,
    *const *mut E,
    usize,
    *mut f64,
    usize,
) -> pcgrad_status;

/// The entry points of one element type, as function pointers.
trait VElem: CElem {
    const MERGE: MergeFn<Self>;
    const PROJECT: ProjectFn<Self>;
    const GRAM: GramFn<Self>;
    const APPLY_MERGED: ApplyFn<Self, *const Self>;
    const APPLY_PROJECTED: ApplyFn<Self, *mut Self>;
}

impl VElem for f32 {
    const MERGE: MergeFn<f32> = pcgrad_merge_vars;
    const PROJECT: ProjectFn<f32> = pcgrad_project_vars;
    const GRAM: GramFn<f32> = pcgrad_gram_vars;
    const APPLY_MERGED: ApplyFn<f32, *const f32> = pcgrad_apply_merged_vars;
    const APPLY_PROJECTED: ApplyFn<f32, *mut f32> = pcgrad_apply_projected_vars;
}

impl VElem for f64 {
    const MERGE: MergeFn<f64> = pcgrad_merge_vars_f64;
    const PROJECT: ProjectFn<f64> = pcgrad_project_vars_f64;
    const GRAM: GramFn<f64> = pcgrad_gram_vars_f64;
    const APPLY_MERGED: ApplyFn<f64, *const f64> = pcgrad_apply_merged_vars_f64;
    const APPLY_PROJECTED: ApplyFn<f64, *mut f64> = pcgrad_apply_projected_vars_f64;
}

/// Per-variable buffers of element `E` (the values of `grads`, empty
/// where the task has no gradient), S merged buffers, and everything the
/// calls need.
struct Vp<E: VElem> {
    t: usize,
    segs: Vec<usize>,
    cells: Vec<Vec<E>>,
    outs: Vec<Vec<E>>,
    gram: Vec<f64>,
    coef: Vec<f64>,
    matrix: Vec<f64>,
    stats: pcgrad_stats,
    ws: Vec<f64>,
    rng: Rng,
    table: Vec<u32>,
}

/// The pointer arguments of one call, spoilable field by field.
#[derive(Clone)]
struct VpArgs<E> {
    gtab: Vec<*mut E>,
    grads_len: usize,
    segments: *const usize,
    segments_len: usize,
    tasks: usize,
    var_lo: usize,
    var_hi: usize,
    mtab: Vec<*mut E>,
    merged: Option<*const *mut E>,
    merged_len: usize,
    gram: *mut f64,
    gram_len: usize,
    coef: *const f64,
    coef_len: usize,
    reduction: u32,
    ws: *mut f64,
    ws_len: usize,
}

impl<E: VElem> Vp<E> {
    fn new(t: usize) -> Vp<E> {
        let g = grads_as::<E>(t, false);
        let cells = (0..t * S)
            .map(|c| {
                let (i, s) = (c / S, c % S);
                if present(i, s) {
                    let a = i * N + seg_start(s);
                    g[a..a + SEGS[s]].to_vec()
                } else {
                    vec![]
                }
            })
            .collect();
        let mut need = 0;
        // SAFETY: `need` is a live, aligned `usize`.
        assert_eq!(
            unsafe { pcgrad_workspace_len_vars(t, S, &mut need) },
            PCGRAD_OK
        );
        Vp {
            t,
            segs: SEGS.to_vec(),
            cells,
            outs: SEGS.iter().map(|&l| vec![E::SENT; l]).collect(),
            gram: vec![0.0; 2 * t * t],
            coef: vec![SENT64; t * t + 2 * t],
            matrix: vec![SENT64; t * t],
            stats: STATS_SENT,
            ws: vec![SENT64; need],
            rng: Rng::new(SEED),
            table: order_table(t),
        }
    }

    fn cfg(&mut self, m: M, red: u32) -> pcgrad_config {
        let mut c = config(m, red);
        c.rng = ptr::addr_of_mut!(self.rng);
        c.order_table = self.table.as_ptr();
        c.order_table_len = self.table.len();
        c
    }

    /// Valid arguments for the variables `lo..hi` (the merged table holds
    /// those variables' outputs).
    fn args(&mut self, lo: usize, hi: usize, red: u32) -> VpArgs<E> {
        let gtab: Vec<*mut E> = self.cells.iter_mut().map(mp).collect();
        let mtab: Vec<*mut E> = self.outs[lo..hi].iter_mut().map(mp).collect();
        VpArgs {
            grads_len: gtab.len(),
            gtab,
            segments: self.segs.as_ptr(),
            segments_len: S,
            tasks: self.t,
            var_lo: lo,
            var_hi: hi,
            merged: None,
            merged_len: mtab.len(),
            mtab,
            gram: mp(&mut self.gram),
            gram_len: self.gram.len(),
            coef: cp(&self.coef),
            coef_len: self.coef.len(),
            reduction: red,
            ws: mp(&mut self.ws),
            ws_len: self.ws.len(),
        }
    }

    /// Every caller buffer but the workspace.
    fn snapshot(&self) -> Vec<u64> {
        let mut s: Vec<u64> = Vec::new();
        for c in self.cells.iter().chain(&self.outs) {
            s.extend(c.iter().map(|x| x.bits()));
        }
        s.extend(bits64(&self.gram));
        s.extend(bits64(&self.coef));
        s.extend(bits64(&self.matrix));
        s.push(self.rng.state);
        s
    }

    fn merged(&self) -> Vec<u64> {
        self.outs.concat().into_iter().map(E::bits).collect()
    }

    fn projected(&self) -> Vec<u64> {
        self.cells.concat().into_iter().map(E::bits).collect()
    }

    /// The one call, `pcgrad_merge_vars` (or `_project_vars` when
    /// `project`), with the Gram matrix as diagnostic.
    fn one_call(&mut self, m: M, red: u32, project: bool) -> pcgrad_status {
        // The arguments first: `cfg` points into `self` (the PRNG), so no
        // `&mut self` may follow it.
        let a = self.args(0, S, red);
        let cfg = self.cfg(m, red);
        let (stats, mx, mx_len) = (
            ptr::addr_of_mut!(self.stats),
            mp(&mut self.matrix),
            self.t * self.t,
        );
        // SAFETY: every pointer is a live buffer of the fixture of the
        // length passed with it; the tables are owned by `a`.
        unsafe {
            if project {
                E::PROJECT(
                    &cfg,
                    a.gtab.as_ptr(),
                    a.grads_len,
                    a.segments,
                    a.segments_len,
                    a.tasks,
                    a.mtab.as_ptr(),
                    a.merged_len,
                    stats,
                    mx,
                    mx_len,
                    a.ws,
                    a.ws_len,
                )
            } else {
                E::MERGE(
                    &cfg,
                    a.gtab.as_ptr().cast(),
                    a.grads_len,
                    a.segments,
                    a.segments_len,
                    a.tasks,
                    a.mtab.as_ptr(),
                    a.merged_len,
                    stats,
                    mx,
                    mx_len,
                    a.ws,
                    a.ws_len,
                )
            }
        }
    }

    /// `pcgrad_coefficients` on `self.gram` into `self.coef`.
    fn coefficients(&mut self, m: M, red: u32) -> pcgrad_status {
        let cfg = self.cfg(m, red);
        let (t, stats) = (self.t, ptr::addr_of_mut!(self.stats));
        // SAFETY: live fixture buffers of the lengths passed.
        unsafe {
            pcgrad_coefficients(
                &cfg,
                self.gram.as_ptr(),
                self.gram.len(),
                t,
                stats,
                self.coef.as_mut_ptr(),
                self.coef.len(),
            )
        }
    }
}

impl<E: VElem> VpArgs<E> {
    fn merged(&self) -> *const *mut E {
        self.merged.unwrap_or(self.mtab.as_ptr())
    }
    fn gram(&self) -> pcgrad_status {
        // SAFETY: the pointers are the fixture's (or deliberately spoiled
        // values the entry point must refuse before reading anything).
        unsafe {
            E::GRAM(
                self.gtab.as_ptr().cast(),
                self.grads_len,
                self.segments,
                self.segments_len,
                self.tasks,
                self.var_lo,
                self.var_hi,
                self.gram,
                self.gram_len,
                self.ws,
                self.ws_len,
            )
        }
    }
    fn apply_merged(&self) -> pcgrad_status {
        // SAFETY: as in `gram`.
        unsafe {
            E::APPLY_MERGED(
                self.gtab.as_ptr().cast(),
                self.grads_len,
                self.segments,
                self.segments_len,
                self.coef,
                self.coef_len,
                self.tasks,
                self.reduction,
                self.var_lo,
                self.var_hi,
                self.merged(),
                self.merged_len,
                self.ws,
                self.ws_len,
            )
        }
    }
    fn apply_projected(&self) -> pcgrad_status {
        // SAFETY: as in `gram`.
        unsafe {
            E::APPLY_PROJECTED(
                self.gtab.as_ptr(),
                self.grads_len,
                self.segments,
                self.segments_len,
                self.coef,
                self.coef_len,
                self.tasks,
                self.reduction,
                self.var_lo,
                self.var_hi,
                self.merged(),
                self.merged_len,
                self.ws,
                self.ws_len,
            )
        }
    }
}

/// Splits of the S = 3 variables into shards (empty shards included).
const SPLITS: [&[(usize, usize)]; 3] = [
    &[(0, 3)],
    &[(0, 1), (1, 3)],
    &[(0, 0), (0, 2), (2, 3), (3, 3)],
];

fn splits() -> &'static [&'static [(usize, usize)]] {
    if cfg!(miri) {
        &SPLITS[1..2]
    } else {
        &SPLITS
    }
}

#[test]
fn per_variable_f64_equals_flat_f64_with_masks() {
    for &t in TASKS {
        for &m in MODES {
            for &red in reductions(t, m) {
                let mut flat = FlatFx::<f64>::of(t, true, m, red);
                assert_eq!(run(&mut flat, FlatArgs::merge), PCGRAD_OK);
                let mut flat_p = FlatFx::<f64>::of(t, true, m, red);
                assert_eq!(run(&mut flat_p, FlatArgs::project), PCGRAD_OK);

                let mut v = Vp::<f64>::new(t);
                assert_eq!(v.one_call(m, red, false), PCGRAD_OK);
                assert_eq!(v.merged(), bits_of(&flat.merged), "T={t} {m:?}");
                assert_eq!(bits64(&v.matrix), bits64(&flat.matrix));
                assert_eq!(v.stats, flat.stats);
                assert_eq!(v.rng, flat.rng);

                let mut v = Vp::<f64>::new(t);
                assert_eq!(v.one_call(m, red, true), PCGRAD_OK);
                assert_eq!(v.merged(), bits_of(&flat_p.merged));
                for (c, cell) in v.cells.iter().enumerate() {
                    let (i, s) = (c / S, c % S);
                    let at = i * N + seg_start(s);
                    if present(i, s) {
                        assert_eq!(bits64(cell), bits64(&flat_p.grads[at..at + SEGS[s]]));
                    }
                }
                assert_eq!(v.stats, flat_p.stats);
            }
        }
    }
}

#[test]
fn per_variable_phases_equal_the_one_call_result() {
    phases_equal_one_call::<f32>();
    phases_equal_one_call::<f64>();
}

fn phases_equal_one_call<E: VElem>() {
    for &t in TASKS {
        for &m in MODES {
            for &red in reductions(t, m) {
                let mut one = Vp::<E>::new(t);
                assert_eq!(one.one_call(m, red, false), PCGRAD_OK);
                let mut one_p = Vp::<E>::new(t);
                assert_eq!(one_p.one_call(m, red, true), PCGRAD_OK);
                for split in splits() {
                    let mut v = Vp::<E>::new(t);
                    // Phase 1 per shard into a zeroed partial, then the
                    // all-reduce in shard order.
                    let mut sum = vec![0.0; 2 * t * t];
                    for &(lo, hi) in *split {
                        let mut a = v.args(lo, hi, red);
                        // A shard passes only its own variables' buffers.
                        for (c, p) in a.gtab.iter_mut().enumerate() {
                            if !(lo..hi).contains(&(c % S)) {
                                *p = ptr::null_mut();
                            }
                        }
                        assert_eq!(a.gram(), PCGRAD_OK);
                        for (s, g) in sum.iter_mut().zip(&v.gram[..t * t]) {
                            *s += g;
                        }
                        v.gram.fill(0.0);
                    }
                    assert_eq!(
                        bits64(&sum[..t * t]),
                        bits64(&one.matrix),
                        "T={t} {split:?}"
                    );
                    v.gram.copy_from_slice(&sum);
                    assert_eq!(v.coefficients(m, red), PCGRAD_OK);
                    assert_eq!(v.stats, one.stats);
                    assert_eq!(v.rng, one.rng);
                    // Phase 3, merged only, then in place into fresh cells.
                    for &(lo, hi) in *split {
                        assert_eq!(v.args(lo, hi, red).apply_merged(), PCGRAD_OK);
                    }
                    assert_eq!(v.merged(), one.merged(), "T={t} {m:?} {split:?}");
                    let mut w = Vp::<E>::new(t);
                    w.coef.copy_from_slice(&v.coef);
                    for &(lo, hi) in *split {
                        assert_eq!(w.args(lo, hi, red).apply_projected(), PCGRAD_OK);
                    }
                    assert_eq!(w.merged(), one_p.merged());
                    assert_eq!(w.projected(), one_p.projected());
                    // Without merged outputs only the cells change.
                    let mut w = Vp::<E>::new(t);
                    w.coef.copy_from_slice(&v.coef);
                    for &(lo, hi) in *split {
                        let mut a = w.args(lo, hi, red);
                        (a.merged, a.merged_len) = (Some(ptr::null()), 0);
                        assert_eq!(a.apply_projected(), PCGRAD_OK);
                    }
                    assert_eq!(w.projected(), one_p.projected());
                    assert!(w.outs.concat().iter().all(|x| x.bits() == E::SENT.bits()));
                }
            }
        }
    }
}

/// Runs `call` on arguments spoiled by `edit`; expects `want` and every
/// caller buffer unchanged.
#[track_caller]
fn refused<E: VElem>(
    case: &str,
    want: pcgrad_status,
    call: fn(&VpArgs<E>) -> pcgrad_status,
    edit: impl FnOnce(&mut VpArgs<E>, &mut Vp<E>),
) {
    let mut v = Vp::<E>::new(3);
    // Valid coefficients (so a refusal is never about them by accident).
    let mut g = Vp::<E>::new(3);
    assert_eq!(g.args(0, S, 0).gram(), PCGRAD_OK);
    v.gram.copy_from_slice(&g.gram);
    assert_eq!(v.coefficients(M::Fixed, 0), PCGRAD_OK);
    v.gram.fill(0.0);
    let mut a = v.args(1, 3, 0);
    edit(&mut a, &mut v);
    let before = v.snapshot();
    assert_eq!(call(&a), want, "{case}");
    assert!(
        v.snapshot() == before,
        "{case}: a refused call wrote a caller buffer"
    );
}

#[test]
fn per_variable_phases_refuse_bad_input() {
    refusals::<f32>();
    refusals::<f64>();
}

fn refusals<E: VElem>() {
    type Call<E> = fn(&VpArgs<E>) -> pcgrad_status;
    let calls: [(&str, Call<E>); 3] = [
        ("gram", VpArgs::gram),
        ("apply_merged", VpArgs::apply_merged),
        ("apply_projected", VpArgs::apply_projected),
    ];
    for (name, call) in calls {
        let r = |case: &str, want, edit: &dyn Fn(&mut VpArgs<E>, &mut Vp<E>)| {
            refused::<E>(&std::format!("{name}: {case}"), want, call, |a, v| {
                edit(a, v)
            })
        };
        r("var_lo > var_hi", PCGRAD_ERROR_INVALID_RANGE, &|a, _| {
            (a.var_lo, a.var_hi) = (2, 1)
        });
        r("var_hi > S", PCGRAD_ERROR_INVALID_RANGE, &|a, _| {
            a.var_hi = S + 1
        });
        r("no tasks", PCGRAD_ERROR_NO_TASKS, &|a, _| {
            (a.tasks, a.grads_len) = (0, 0)
        });
        r("table length", PCGRAD_ERROR_LENGTH_MISMATCH, &|a, _| {
            a.grads_len -= 1
        });
        r("segments NULL", PCGRAD_ERROR_NULL_POINTER, &|a, _| {
            a.segments = ptr::null()
        });
        r("misaligned cell", PCGRAD_ERROR_MISALIGNED, &|a, _| {
            a.gtab[1] = mis_mut(a.gtab[1])
        });
        r(
            "short workspace",
            PCGRAD_ERROR_WORKSPACE_TOO_SMALL,
            &|a, _| a.ws_len -= 1,
        );
        r("NULL workspace", PCGRAD_ERROR_NULL_POINTER, &|a, _| {
            a.ws = ptr::null_mut()
        });
        r(
            "cell inside the workspace",
            PCGRAD_ERROR_OVERLAP,
            &|a, _| a.gtab[1] = a.ws.cast(),
        );
        if name == "gram" {
            r("short gram", PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a, _| {
                a.gram_len -= 1
            });
            r("NULL gram", PCGRAD_ERROR_NULL_POINTER, &|a, _| {
                a.gram = ptr::null_mut()
            });
            r("gram over the workspace", PCGRAD_ERROR_OVERLAP, &|a, _| {
                (a.gram, a.gram_len) = (a.ws, 18)
            });
            continue;
        }
        r("reduction", PCGRAD_ERROR_INVALID_ENUM, &|a, _| {
            a.reduction = 2
        });
        r("short coef", PCGRAD_ERROR_WORKSPACE_TOO_SMALL, &|a, _| {
            a.coef_len -= 1
        });
        r("merged_len", PCGRAD_ERROR_LENGTH_MISMATCH, &|a, _| {
            a.merged_len = 1
        });
        r("NULL merged entry", PCGRAD_ERROR_NULL_POINTER, &|a, _| {
            a.mtab[0] = ptr::null_mut()
        });
        // Variable 1's output over task 0's buffer of variable 1 (both
        // one element long).
        r("merged over a cell", PCGRAD_ERROR_OVERLAP, &|a, v| {
            a.mtab[0] = v.cells[1].as_mut_ptr()
        });
        // Variable 1 (one element) into the first element of variable
        // 2's buffer.
        r("merged twice", PCGRAD_ERROR_OVERLAP, &|a, _| {
            a.mtab[0] = a.mtab[1]
        });
        r("coef over the workspace", PCGRAD_ERROR_OVERLAP, &|a, _| {
            a.coef = a.ws
        });
        if name == "apply_merged" {
            r("merged NULL", PCGRAD_ERROR_NULL_POINTER, &|a, _| {
                a.merged = Some(ptr::null())
            });
        } else {
            r("two cells one buffer", PCGRAD_ERROR_OVERLAP, &|a, _| {
                a.gtab[S + 1] = a.gtab[1]
            });
        }
    }
}
