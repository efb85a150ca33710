//! Conformance: every vector in `tests/data/conformance/*.json` (produced by
//! the TensorFlow reference implementation, see the README there) and, when
//! the environment variable `PCGRAD_EXTRA_VECTORS` names a directory, every
//! `*.json` in it too (same format).
//!
//! Each case goes through the library's flat read-only path (`merge`), the
//! flat in-place path (`project`), and both per-variable paths, and through
//! the test suite's own `f64` reference; merged and projected gradients must
//! match the vectors' float64 results within 1e-5 of the largest absolute
//! input value.
//!
//! With the `half` feature, every case is also rounded to bf16 and to f16
//! and run through the same four paths in that type, against the float64
//! reference of the rounded input, within the tolerance derived at
//! [`half_tol`].
//!
//! This test has its own `main` (no libtest harness) so that its summary
//! line, `conformance: K cases passed`, always shows in `cargo test` output.

mod common;

use std::path::{Path, PathBuf};

use common::reference::{self, first_mismatch, max_abs, Problem, RefMode};
use common::{LibMode, LibOutput};
#[cfg(feature = "half")]
use pcgrad::Element;
use serde_json::Value;

/// Tolerance relative to the largest absolute input value.
const TOL: f64 = 1e-5;
/// Tolerance of the test's own `f64` reference against the vectors' `f64`
/// results.
const REF_TOL: f64 = 1e-9;
/// Smallest decision margin (see `RefOutput::margin`) at which the
/// projection count must match the reference exactly.
const STATS_MARGIN: f64 = 1e-6;

#[derive(Clone)]
struct Case {
    name: String,
    problem: Problem,
    mode: LibMode,
    mean: bool,
    merged: Vec<f64>,
    projected: Vec<f64>,
}

fn field<'a>(v: &'a Value, key: &str, file: &Path) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("{}: missing field `{key}`", file.display()))
}

fn usize_of(v: &Value, file: &Path) -> usize {
    v.as_u64()
        .unwrap_or_else(|| panic!("{}: expected an integer, got {v}", file.display())) as usize
}

fn floats(v: &Value, file: &Path) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("{}: expected an array", file.display()))
        .iter()
        .map(|x| {
            x.as_f64()
                .unwrap_or_else(|| panic!("{}: expected a number, got {x}", file.display()))
        })
        .collect()
}

fn rows<'a>(v: &'a Value, file: &Path) -> Vec<&'a Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{}: expected an array of rows", file.display()))
        .iter()
        .collect()
}

/// Python's `json` writes non-finite floats as the bare tokens `NaN`,
/// `Infinity` and `-Infinity`, which are not JSON. The vectors only use them
/// in informational fields (`decision_margin`), so they become `null`; a
/// field the test reads as a number then fails loudly.
fn non_finite_to_null(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t));
            if let Some(t) = token {
                out.push_str("null");
                rest = &rest[t.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn load(file: &Path) -> Case {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: cannot read: {e}", file.display()));
    let v: Value = serde_json::from_str(&non_finite_to_null(&text))
        .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", file.display()));
    let name = field(&v, "name", file).as_str().unwrap_or("?").to_string();
    let tasks = usize_of(field(&v, "num_tasks", file), file);
    let dim = usize_of(field(&v, "dim", file), file);
    let segments: Vec<usize> = rows(field(&v, "segments", file), file)
        .into_iter()
        .map(|x| usize_of(x, file))
        .collect();
    let has_grad: Vec<bool> = rows(field(&v, "has_grad", file), file)
        .into_iter()
        .flat_map(|r| rows(r, file))
        .map(|b| {
            b.as_bool()
                .unwrap_or_else(|| panic!("{name}: has_grad holds a non-boolean"))
        })
        .collect();
    let grads: Vec<f64> = rows(field(&v, "grads", file), file)
        .into_iter()
        .flat_map(|r| floats(r, file))
        .collect();
    let projected: Vec<f64> = rows(field(&v, "projected_f64_reference", file), file)
        .into_iter()
        .flat_map(|r| floats(r, file))
        .collect();
    let merged = floats(field(&v, "merged_f64_reference", file), file);
    let mean = match field(&v, "reduction", file).as_str() {
        Some("mean") => true,
        Some("sum") => false,
        other => panic!("{name}: unknown reduction {other:?}"),
    };
    let mode = match field(&v, "mode", file).as_str() {
        Some("simultaneous") => LibMode::Simultaneous,
        Some("sequential") => {
            let table: Vec<u32> = rows(field(&v, "orders", file), file)
                .into_iter()
                .flat_map(|r| rows(r, file))
                .map(|x| usize_of(x, file) as u32)
                .collect();
            LibMode::Explicit(table)
        }
        other => panic!("{name}: unknown mode {other:?}"),
    };
    assert_eq!(grads.len(), tasks * dim, "{name}: grads is not T x N");
    assert_eq!(
        projected.len(),
        tasks * dim,
        "{name}: projected is not T x N"
    );
    assert_eq!(merged.len(), dim, "{name}: merged is not N long");
    assert_eq!(
        segments.iter().sum::<usize>(),
        dim,
        "{name}: segments do not sum to N"
    );
    assert_eq!(
        has_grad.len(),
        tasks * segments.len(),
        "{name}: has_grad is not T x S"
    );
    Case {
        name,
        problem: Problem {
            tasks,
            dim,
            segments,
            has_grad,
            grads,
        },
        mode,
        mean,
        merged,
        projected,
    }
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the vector directory {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn check(case: &Case, what: &str, got: &[f64], want: &[f64], tol: f64) {
    if let Some((k, g, w)) = first_mismatch(got, want, tol) {
        panic!(
            "conformance case {}: {what} differs at index {k}: got {g:e}, want {w:e} (tolerance {tol:e})",
            case.name
        );
    }
}

fn check_lib(case: &Case, path: &str, out: &LibOutput, projected_want: Option<&[f64]>, tol: f64) {
    check(
        case,
        &format!("{path}: merged"),
        &out.merged,
        &case.merged,
        tol,
    );
    if let (Some(got), Some(want)) = (&out.projected, projected_want) {
        check(case, &format!("{path}: projected"), got, want, tol);
    }
}

fn run_case(case: &Case) {
    let p = &case.problem;
    let scale = max_abs(&p.grads).max(f64::MIN_POSITIVE);
    let tol = TOL * scale;

    // The test suite's own reference reproduces the vectors.
    let rmode: RefMode = common::ref_mode(p.tasks, &case.mode);
    let r = reference::reference(p, &rmode, case.mean);
    check(
        case,
        "f64 reference: merged",
        &r.merged,
        &case.merged,
        REF_TOL * scale,
    );
    check(
        case,
        "f64 reference: projected",
        &r.projected,
        &case.projected,
        REF_TOL * scale,
    );

    // The library, every entry point, f32 (the vectors are f32) and f64.
    let m = &case.mode;
    check_lib(
        case,
        "merge f32",
        &common::run_merge::<f32>(p, m, case.mean),
        None,
        tol,
    );
    check_lib(
        case,
        "merge f64",
        &common::run_merge::<f64>(p, m, case.mean),
        None,
        tol,
    );
    let out = common::run_project::<f32>(p, m, case.mean);
    check_lib(case, "project f32", &out, Some(&case.projected), tol);
    let out = common::run_project::<f64>(p, m, case.mean);
    check_lib(case, "project f64", &out, Some(&case.projected), tol);
    let out = common::run_per_variable::<f32>(p, m, case.mean);
    check_lib(case, "per-variable merge f32", &out, None, tol);
    let masked = common::mask_projected(p, &case.projected);
    let out = common::run_per_variable_project::<f32>(p, m, case.mean);
    check_lib(case, "per-variable project f32", &out, Some(&masked), tol);

    // The statistics agree with the reference's counts, unless a decision
    // is a tie (a projected gradient that cancelled to zero, as in N = 1,
    // where the library's dot product is rounding noise of either sign).
    let stats = common::run_merge::<f32>(p, m, case.mean).stats;
    assert_eq!(
        stats.conflicting_pairs, r.conflicting_pairs,
        "conformance case {}: conflicting pairs differ from the reference",
        case.name
    );
    if r.margin >= STATS_MARGIN {
        assert_eq!(
            (stats.conflicting_pairs, stats.projections),
            (r.conflicting_pairs, r.projections),
            "conformance case {}: stats (conflicting pairs, projections) differ from the reference",
            case.name
        );
    }
}

/// Half precision: the tolerance, derived. Let x be the case's gradients
/// rounded to the format (unit roundoff u: 2^-8 for bf16, 2^-11 for f16),
/// `ref` the float64 reference of x and `scale` = max |x|.
///
/// 1. Every bf16 and f16 value is an `f32`, and the library's Gram matrix
///    and `f64` apply sums for x are bitwise those of its `f32` path on the
///    same values (`src/kernels/half/tests.rs`). So the unrounded value v
///    of each output is the one the `f32` path rounds, and that path is
///    within TOL * scale of `ref` (asserted below on x itself): |v - ref|
///    <= TOL * scale + 2^-24 |v|.
/// 2. The half output is v rounded once, to nearest:
///    |out - v| <= u |v| + eta, eta half the format's smallest subnormal
///    step (2^-25 for f16, 2^-134 for bf16).
/// 3. Together, with |v| <= |ref| + TOL * scale + 2^-24 |v|:
///    |out - ref| <= (u + 2^-23) |ref| + 2 TOL * scale + eta,
///    per element: 2^-8 (+ 2^-23) of the value plus 2e-5 of the largest
///    input for bf16, 2^-11 (+ 2^-23) plus 2e-5 (+ 2^-25) for f16.
#[cfg(feature = "half")]
fn half_tol(f: &HalfFormat, want: f64, scale: f64) -> f64 {
    (f.unit + 2f64.powi(-23)) * want.abs() + 2.0 * TOL * scale + f.eta
}

/// One half format of the conformance run.
#[cfg(feature = "half")]
struct HalfFormat {
    name: &'static str,
    /// Unit roundoff u.
    unit: f64,
    /// Half the smallest subnormal step.
    eta: f64,
    /// The largest error seen, as a fraction of its tolerance.
    worst: f64,
}

/// The case rounded to `H`, through every path in `H`, against the
/// float64 reference of the rounded input ([`half_tol`]).
#[cfg(feature = "half")]
fn run_half<H: Element>(case: &Case, f: &mut HalfFormat) {
    let mut ph = case.problem.clone();
    for x in &mut ph.grads {
        *x = Element::to_f64(H::from_f64(*x));
    }
    let p = &ph;
    let m = &case.mode;
    let scale = max_abs(&p.grads).max(f64::MIN_POSITIVE);
    let r = reference::reference(p, &common::ref_mode(p.tasks, m), case.mean);
    let name = f.name;
    // Step 1's premise, on the rounded input.
    check(
        case,
        &format!("f32 path on the {name}-rounded input: merged"),
        &common::run_merge::<f32>(p, m, case.mean).merged,
        &r.merged,
        TOL * scale,
    );
    let mut within = |what: &str, got: &[f64], want: &[f64]| {
        assert_eq!(got.len(), want.len());
        for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
            let (e, bound) = ((g - w).abs(), half_tol(f, w, scale));
            assert!(
                g == w || e <= bound,
                "conformance case {} in {name}: {what} differs at index {k}: got {g:e}, want {w:e} (tolerance {bound:e})",
                case.name
            );
            if g != w {
                f.worst = f.worst.max(e / bound);
            }
        }
    };
    within(
        "merge",
        &common::run_merge::<H>(p, m, case.mean).merged,
        &r.merged,
    );
    let out = common::run_project::<H>(p, m, case.mean);
    within("project: merged", &out.merged, &r.merged);
    within(
        "project: projected",
        out.projected.as_deref().unwrap_or(&[]),
        &r.projected,
    );
    let out = common::run_per_variable::<H>(p, m, case.mean);
    within("per-variable merge", &out.merged, &r.merged);
    let out = common::run_per_variable_project::<H>(p, m, case.mean);
    within("per-variable project: merged", &out.merged, &r.merged);
    let masked = common::mask_projected(p, &r.projected);
    within(
        "per-variable project: projected",
        out.projected.as_deref().unwrap_or(&[]),
        &masked,
    );
    let stats = common::run_merge::<H>(p, m, case.mean).stats;
    if r.margin >= STATS_MARGIN {
        assert_eq!(
            (stats.conflicting_pairs, stats.projections),
            (r.conflicting_pairs, r.projections),
            "conformance case {} in {name}: stats differ from the reference",
            case.name
        );
    }
}

/// The cases of `c_examples/half_vectors.inc` (small, both modes and
/// reductions, several segments, tasks without a gradient).
#[cfg(feature = "half")]
const C_CASES: [&str; 6] = [
    "001_simultaneous_mean_T8_N7_random",
    "009_simultaneous_mean_T2_N96_scaled",
    "014_simultaneous_sum_T8_N7_scaled",
    "023_sequential_sum_T5_N8_conflict",
    "025_sequential_sum_T3_N96_conflict",
    "026_sequential_mean_T3_N8_random",
];

/// The C table of [`C_CASES`] for `c_examples/half_test.c`: each case
/// rounded to bf16 and to f16 (the inputs as bit patterns), with the
/// float64 reference of each rounded input (merged and projected).
#[cfg(feature = "half")]
fn c_table(cases: &[Case]) -> String {
    use std::fmt::Write;
    fn list<T>(xs: &[T], f: impl Fn(&T) -> String) -> String {
        let items: Vec<String> = xs.iter().map(f).collect();
        items
            .chunks(6)
            .map(|c| format!("    {},", c.join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    }
    let dbl = |x: &f64| format!("{x:.17e}");
    let mut out = String::from(
        "/* The conformance vectors of half_test.c, rounded to bf16 and to f16,\n \
         * with the float64 reference (tests/common/reference.rs) of each\n \
         * rounded input. Generated and checked by tests/conformance.rs\n \
         * (`cargo test -p pcgrad --features half --test conformance`;\n \
         * PCGRAD_BLESS=1 rewrites it). Do not edit. */\n",
    );
    let mut rows = String::new();
    for (k, case) in cases.iter().enumerate() {
        let p = &case.problem;
        let _ = writeln!(out, "\n/* {} */", case.name);
        let _ = writeln!(
            out,
            "static const size_t hv{k}_segs[] = {{\n{}\n}};",
            list(&p.segments, |x| x.to_string())
        );
        let _ = writeln!(
            out,
            "static const uint8_t hv{k}_has_grad[] = {{\n{}\n}};",
            list(&p.has_grad, |&b| u8::from(b).to_string())
        );
        let (mode, order, table) = match &case.mode {
            common::LibMode::Explicit(t) if p.tasks > 1 => {
                let _ = writeln!(
                    out,
                    "static const uint32_t hv{k}_order[] = {{\n{}\n}};",
                    list(t, |x| x.to_string())
                );
                (
                    "PCGRAD_MODE_SEQUENTIAL",
                    "PCGRAD_ORDER_EXPLICIT",
                    (format!("hv{k}_order"), t.len()),
                )
            }
            common::LibMode::Explicit(_) => (
                "PCGRAD_MODE_SEQUENTIAL",
                "PCGRAD_ORDER_FIXED",
                ("NULL".into(), 0),
            ),
            _ => (
                "PCGRAD_MODE_SIMULTANEOUS",
                "PCGRAD_ORDER_FIXED",
                ("NULL".into(), 0),
            ),
        };
        let formats: [(&str, Vec<u16>); 2] = [
            (
                "bf16",
                p.grads
                    .iter()
                    .map(|&x| <pcgrad::bf16 as Element>::from_f64(x).to_bits())
                    .collect(),
            ),
            (
                "f16",
                p.grads
                    .iter()
                    .map(|&x| <pcgrad::f16 as Element>::from_f64(x).to_bits())
                    .collect(),
            ),
        ];
        for (f, g) in &formats {
            let mut ph = p.clone();
            ph.grads = g
                .iter()
                .map(|&b| {
                    if *f == "bf16" {
                        pcgrad::bf16::from_bits(b).to_f64()
                    } else {
                        pcgrad::f16::from_bits(b).to_f64()
                    }
                })
                .collect();
            let r = reference::reference(&ph, &common::ref_mode(p.tasks, &case.mode), case.mean);
            let _ = writeln!(
                out,
                "static const uint16_t hv{k}_{f}_grads[] = {{\n{}\n}};",
                list(g, |b| format!("0x{b:04X}"))
            );
            let _ = writeln!(
                out,
                "static const double hv{k}_{f}_merged[] = {{\n{}\n}};",
                list(&r.merged, dbl)
            );
            let _ = writeln!(
                out,
                "static const double hv{k}_{f}_projected[] = {{\n{}\n}};",
                list(&r.projected, dbl)
            );
        }
        let _ = writeln!(
            rows,
            "    {{\"{}\", {}, {}, {mode}, {order}, {}, hv{k}_segs, {}, hv{k}_has_grad, {}, {}, {},\n     \
             {{{{hv{k}_bf16_grads, hv{k}_bf16_merged, hv{k}_bf16_projected}},\n      \
             {{hv{k}_f16_grads, hv{k}_f16_merged, hv{k}_f16_projected}}}}}},",
            case.name,
            p.tasks,
            p.dim,
            if case.mean { "PCGRAD_REDUCTION_MEAN" } else { "PCGRAD_REDUCTION_SUM" },
            p.segments.len(),
            p.has_grad.len(),
            table.0,
            table.1,
        );
    }
    let _ = write!(
        out,
        "\n#define HALF_CASES {}\nstatic const struct half_case CASES[HALF_CASES] = {{\n{rows}}};\n",
        cases.len()
    );
    out
}

/// Checks (or with `PCGRAD_BLESS` set, rewrites) `c_examples/half_vectors.inc`.
#[cfg(feature = "half")]
fn check_c_table(cases: &[Case]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("c_examples/half_vectors.inc");
    let picked: Vec<Case> = C_CASES
        .iter()
        .map(|name| {
            cases
                .iter()
                .find(|c| c.name == *name)
                .unwrap_or_else(|| panic!("no conformance case {name}"))
                .clone()
        })
        .collect();
    let fresh = c_table(&picked);
    if std::env::var_os("PCGRAD_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write c_examples/half_vectors.inc");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "c_examples/half_vectors.inc is stale: regenerate it with \
         `PCGRAD_BLESS=1 cargo test -p pcgrad --features half --test conformance`"
    );
}

fn main() {
    let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/conformance");
    let mut files = json_files(&builtin);
    assert!(
        !files.is_empty(),
        "no conformance vectors in {}",
        builtin.display()
    );
    if let Some(extra) = std::env::var_os("PCGRAD_EXTRA_VECTORS") {
        let extra = PathBuf::from(extra);
        let more = json_files(&extra);
        assert!(
            !more.is_empty(),
            "PCGRAD_EXTRA_VECTORS={} holds no *.json vectors",
            extra.display()
        );
        files.extend(more);
    }
    #[cfg(feature = "half")]
    let mut formats = [
        HalfFormat {
            name: "bf16",
            unit: 2f64.powi(-8),
            eta: 2f64.powi(-134),
            worst: 0.0,
        },
        HalfFormat {
            name: "f16",
            unit: 2f64.powi(-11),
            eta: 2f64.powi(-25),
            worst: 0.0,
        },
    ];
    let mut passed = 0;
    #[cfg(feature = "half")]
    let mut builtin_cases = Vec::new();
    for file in &files {
        let case = load(file);
        run_case(&case);
        #[cfg(feature = "half")]
        if file.starts_with(&builtin) {
            builtin_cases.push(case.clone());
        }
        #[cfg(feature = "half")]
        {
            run_half::<pcgrad::bf16>(&case, &mut formats[0]);
            run_half::<pcgrad::f16>(&case, &mut formats[1]);
        }
        passed += 1;
    }
    #[cfg(feature = "half")]
    check_c_table(&builtin_cases);
    #[cfg(feature = "half")]
    for f in &formats {
        println!(
            "conformance {}: {passed} rounded cases within tolerance, largest error {:.3} of it",
            f.name, f.worst
        );
    }
    println!("conformance: {passed} cases passed");
}
