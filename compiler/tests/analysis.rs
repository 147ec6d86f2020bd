//! Params and FLOPs against the DiT paper (tread.md §1 invariant 6) and against the closed-form
//! formula computed here independently of the compiler.

mod common;

use common::*;
use tread_compiler::report::Report;

/// DiT forward FLOPs per sample from the closed form in tread.md §1: per block
/// 12·D²·n + 2·n²·D + 6·D², plus patch embedding, timestep MLP and final layer.
/// `tokens[b]` is the token count of block b.
fn dit_flops(d: u64, patch: u64, channels: u64, n: u64, tokens: &[u64]) -> u64 {
    let blocks: u64 = tokens
        .iter()
        .map(|&t| 12 * d * d * t + 2 * t * t * d + 6 * d * d)
        .sum();
    let embed = patch * patch * channels * d * n;
    let t_mlp = 256 * d + d * d;
    let final_layer = 2 * d * d + d * patch * patch * channels * n;
    blocks + embed + t_mlp + final_layer
}

fn route_tokens(depth: usize, start: usize, end: usize, n: u64, keep: u64) -> Vec<u64> {
    (0..depth)
        .map(|b| if (start..=end).contains(&b) { keep } else { n })
        .collect()
}

fn report(file: &str, routes: &[&str]) -> Report {
    Report::new(&compile(&root().join("models").join(file), routes))
}

fn within(actual: f64, paper: f64, tol: f64) -> bool {
    ((actual - paper) / paper).abs() <= tol
}

#[test]
fn dense_gflops_match_the_dit_paper_within_one_percent() {
    for (file, paper) in [
        ("dit-s2.json", 6.06),
        ("dit-b2.json", 23.01),
        ("dit-l2.json", 80.71),
        ("dit-xl2.json", 118.64),
    ] {
        let r = report(file, &["paper"]);
        assert!(
            within(r.gflops.dense, paper, 0.01),
            "{file}: {} vs paper {paper}",
            r.gflops.dense
        );
    }
}

#[test]
fn flops_equal_the_closed_form_dense_and_routed() {
    for (file, depth, d) in [
        ("dit-s2.json", 12, 384),
        ("dit-b2.json", 12, 768),
        ("dit-l2.json", 24, 1024),
        ("dit-xl2.json", 28, 1152),
    ] {
        let r = report(file, &["paper"]);
        let dense = dit_flops(d, 2, 4, 256, &vec![256; depth]);
        let routed = dit_flops(d, 2, 4, 256, &route_tokens(depth, 2, depth - 4, 256, 128));
        assert_eq!((r.gflops.dense * 1e9).round() as u64, dense, "{file} dense");
        assert_eq!(
            (r.gflops.routed * 1e9).round() as u64,
            routed,
            "{file} routed"
        );
    }
}

#[test]
fn routed_gflops_with_the_paper_rule() {
    // B/2 route 2→8 and XL/2 route 2→24: tread.md quotes ≈ 16.1 and ≈ 69.1.
    let b = report("dit-b2.json", &["paper"]);
    assert!(
        (b.gflops.routed - 16.13).abs() < 0.01,
        "{}",
        b.gflops.routed
    );
    let xl = report("dit-xl2.json", &["paper"]);
    assert!(
        (xl.gflops.routed - 69.13).abs() < 0.01,
        "{}",
        xl.gflops.routed
    );
    assert_eq!(b.routes.len(), 1);
    assert_eq!(
        (b.routes[0].start, b.routes[0].end, b.routes[0].keep),
        (2, 8, 128)
    );
    assert_eq!((xl.routes[0].start, xl.routes[0].end), (2, 24));
}

#[test]
fn params_match_the_dit_paper() {
    let s = report("dit-s2.json", &[]);
    assert_eq!(s.params, 32_957_200, "DiT-S/2 with the fixed pos-embed");
    assert_eq!(s.fixed_params, 256 * 384);
    for (file, paper) in [
        ("dit-b2.json", 130e6),
        ("dit-l2.json", 458e6),
        ("dit-xl2.json", 675e6),
    ] {
        let r = report(file, &[]);
        assert!(
            within(r.params as f64, paper, 0.005),
            "{file}: {}",
            r.params
        );
    }
}

#[test]
fn routing_changes_flops_but_never_params() {
    for p in presets() {
        let dense = Report::new(&compile_dense(&p));
        let routed = Report::new(&compile(&p, &[]));
        assert_eq!(dense.params, routed.params, "{}", rel(&p));
        assert!(routed.gflops.routed < dense.gflops.dense, "{}", rel(&p));
    }
}

#[test]
fn rate_zero_keeps_every_token_and_every_flop() {
    let r = report("dit-s2.json", &["0:2-8"]);
    assert_eq!(r.routes[0].keep, 256);
    assert_eq!(r.gflops.routed, r.gflops.dense);
}
