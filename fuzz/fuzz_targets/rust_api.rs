//! The Rust API with arbitrary layouts and slices: `Layout::new`,
//! `Flat::new`, `FlatMut::new`, `PerVariable::new`, `PerVariableMut::new`,
//! `PcGrad::merge` / `project` with any merged and workspace lengths,
//! `workspace_len`, `workspace_gram`, `cosine_matrix`, `pack`,
//! `unflatten`. No input may panic; a call that returns an error leaves
//! the merged output (and the gradients of `project`) as they were.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pcgrad::{
    cosine_matrix, pack, unflatten, workspace_gram, workspace_len, Flat, FlatMut, Layout, Mode,
    Order, PcGrad, PerVariable, PerVariableMut, Reduction, Rng,
};
use pcgrad_fuzz::*;

fuzz_target!(|data: &[u8]| run(data));

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let (sh, g) = problem_input(&mut b, 12, 200);
    // Arbitrary, possibly inconsistent, arguments around the shape.
    let tasks = if b.chance(10) { b.below(20) } else { sh.tasks };
    let dim = if b.chance(10) { b.below(300) } else { sh.dim };
    let mut segments = sh.segments.clone();
    if b.chance(8) {
        segments = (0..b.below(6)).map(|_| b.below(50)).collect();
    }
    let mut has: Vec<bool> = sh.has_grad.clone();
    if b.chance(8) {
        has = (0..b.below(40)).map(|_| b.bool()).collect();
    }
    let mut data_len = g.len();
    if b.chance(8) {
        data_len = b.below(g.len() + 2).min(g.len());
    }
    let merged_len = if b.chance(8) { b.below(dim + 2) } else { dim };
    let ws_len = if b.chance(8) {
        b.below(600)
    } else {
        workspace_len(tasks).unwrap_or(0)
    };
    let mut table: Vec<u32> = order_table(&mut b, tasks.max(1));
    if b.chance(4) && !table.is_empty() {
        let k = b.below(table.len());
        table[k] = b.u8() as u32;
    }
    if b.chance(8) {
        table.truncate(b.below(table.len() + 1));
    }
    let mut rng = Rng::new(b.u64());
    let mode = match b.u8() % 4 {
        0 => Mode::Sequential(Order::Fixed),
        1 => Mode::Sequential(Order::Explicit(&table)),
        2 => Mode::Sequential(Order::Shuffled(&mut rng)),
        _ => Mode::Simultaneous,
    };
    let red = if b.bool() {
        Reduction::Sum
    } else {
        Reduction::Mean
    };
    let mut pc = PcGrad::with_mode(mode)
        .reduction(red)
        .check_finite(b.bool())
        .threads(b.below(4));

    let mut ws = vec![0.0f64; ws_len];
    let mut merged = vec![7.0f32; merged_len];
    if let Ok(layout) = Layout::new(tasks, dim, &segments, &has) {
        if let Ok(flat) = Flat::new(layout, &g[..data_len]) {
            let before = bits(&merged);
            if pc.merge(&flat, &mut merged, &mut ws).is_err() {
                assert_eq!(bits(&merged), before, "a failed merge wrote merged");
            }
        }
        let mut proj = g[..data_len].to_vec();
        if let Ok(mut flat) = FlatMut::new(layout, &mut proj) {
            let (bm, bp) = (bits(&merged), bits(&g[..data_len]));
            let with_merged = b.bool();
            let m = if with_merged {
                Some(&mut merged[..])
            } else {
                None
            };
            if pc.project(&mut flat, m, &mut ws).is_err() {
                assert_eq!(bits(&merged), bm, "a failed project wrote merged");
                assert_eq!(bits(&proj), bp, "a failed project wrote the gradients");
            }
        }
    }
    if let Ok(gram) = workspace_gram(&ws, tasks) {
        let mut out = vec![
            0.0;
            if b.chance(4) {
                b.below(300)
            } else {
                gram.len()
            }
        ];
        let _ = cosine_matrix(gram, tasks, &mut out);
    }

    // Per-variable views over pieces of the flat buffer.
    let s = segments.len();
    let cells = tasks.saturating_mul(s).min(64);
    let mut pos = 0;
    let mut vars: Vec<Option<&[f32]>> = Vec::new();
    for c in 0..cells {
        let want = segments[c % s];
        let len = if b.chance(10) {
            b.below(want + 2)
        } else {
            want
        };
        if b.chance(4) || pos + len > g.len() {
            vars.push(None);
        } else {
            vars.push(Some(&g[pos..pos + len]));
            pos += len;
        }
    }
    let mut mask = vec![false; vars.len()];
    if let Ok(pv) = PerVariable::new(tasks, &segments, &vars, &mut mask) {
        let n: usize = segments.iter().sum();
        let mut m = vec![0.0f32; if b.chance(8) { b.below(n + 2) } else { n }];
        let _ = pc.merge(&pv, &mut m, &mut ws);
    }
    let mut owned: Vec<Option<Vec<f32>>> = vars.iter().map(|v| v.map(<[f32]>::to_vec)).collect();
    let mut refs: Vec<Option<&mut [f32]>> = owned.iter_mut().map(|v| v.as_deref_mut()).collect();
    let mut mask2 = vec![false; refs.len()];
    if let Ok(mut pv) = PerVariableMut::new(tasks, &segments, &mut refs, &mut mask2) {
        let _ = pc.project(&mut pv, None, &mut ws);
    }

    // pack and unflatten with arbitrary lengths.
    let out_len = if b.chance(4) { b.below(400) } else { pos };
    let mut out = vec![0.0f32; out_len];
    let mut hg = vec![false; if b.chance(4) { b.below(70) } else { vars.len() }];
    let _ = pack(tasks, &segments, &vars, &mut out, &mut hg);
    let mut bufs: Vec<Vec<f32>> = segments
        .iter()
        .map(|&l| vec![0.0; if b.chance(8) { b.below(l + 2) } else { l }])
        .collect();
    let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|v| &mut v[..]).collect();
    let flat_len = if b.chance(4) {
        b.below(g.len() + 1)
    } else {
        dim.min(g.len())
    };
    let _ = unflatten(&segments, &g[..flat_len], &mut outs);
}
