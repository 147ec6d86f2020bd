//! `treadc plan`: single routes that bring a model's training FLOPs to a budget, ranked by the
//! TREAD paper's placement findings (tread.md §1–§5): start at block 2, end at depth − 4, route
//! half the tokens; never route the first or the last block; ending late hurts more than ending
//! early; rate 0.5 beat 0.25, and 0.75 was much worse. Every proposal is checked by the route
//! pass itself, so what is printed compiles.

use serde::Serialize;

use crate::analysis::analyse;
use crate::diag::{Diagnostic, Location, Result};
use crate::parse::Model;
use crate::passes::apply_routes;
use crate::route_spec::{parse_flag, resolve};

/// The rates a plan tries, in the paper's order of preference.
pub const RATES: [f64; 3] = [0.5, 0.25, 0.75];

/// One proposed route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    /// The `--route` flag that applies it.
    pub route: String,
    /// Fraction of the stream's tokens that skip the span.
    pub rate: f64,
    /// First routed block.
    pub start: usize,
    /// Last routed block (inclusive).
    pub end: usize,
    /// Routed training FLOPs over dense ones (forward per sample, as `treadc compile` reports).
    pub flops_ratio: f64,
    /// Distance from the paper's placement (0: the paper's own).
    pub penalty: f64,
    /// Why it ranks where it does.
    pub why: String,
}

/// The paper's placement for `depth` blocks: (start, end), clamped to the routable blocks.
fn paper_span(depth: usize) -> (usize, usize) {
    let start = 2.min(depth.saturating_sub(2)).max(1);
    let end = depth.saturating_sub(4).max(start);
    (start, end)
}

/// How far `(rate, start, end)` is from the paper's placement, and the reasons in words.
fn penalty(rate: f64, start: usize, end: usize, depth: usize) -> (f64, String) {
    let (ps, pe) = paper_span(depth);
    let mut p = 0.0;
    let mut why = Vec::new();
    if start != ps {
        p += start.abs_diff(ps) as f64;
        why.push(format!("starts at {start} (paper: {ps})"));
    }
    match end.cmp(&pe) {
        std::cmp::Ordering::Greater => {
            // The paper's study: ending the route late hurt more than ending it early.
            p += 2.0 * (end - pe) as f64;
            why.push(format!(
                "ends at {end}, after the paper's {pe} (late ends hurt)"
            ));
        }
        std::cmp::Ordering::Less => {
            p += (pe - end) as f64;
            why.push(format!("ends at {end} (paper: {pe})"));
        }
        std::cmp::Ordering::Equal => {}
    }
    if rate != 0.5 {
        p += if rate < 0.5 { 3.0 } else { 6.0 };
        why.push(format!(
            "rate {rate} (the paper's ablation: 0.5 best, 0.25 next, 0.75 far worse)"
        ));
    }
    if why.is_empty() {
        why.push("the paper's placement: start 2, end depth − 4, rate 0.5".into());
    }
    (p, why.join("; "))
}

/// Up to `top` single routes of `model` whose training FLOPs are at most `budget` of dense,
/// best first. A budget no single route reaches is an error saying the closest one could get.
pub fn plan(model: &Model, budget: f64, top: usize) -> Result<Vec<Proposal>> {
    let file = model.file.as_str();
    let bad_budget = |found: String| {
        Diagnostic::new(
            Location::Item("--budget".into()),
            "no single route fits the budget",
        )
        .in_file("<command line>")
        .found(found)
    };
    if !(budget > 0.0 && budget <= 1.0) {
        return Err(bad_budget(format!("budget {budget}"))
            .expected("a fraction of the dense FLOPs in (0, 1]"));
    }
    let g = &model.graph;
    let depth = g.depth();
    if depth < 3 {
        return Err(Diagnostic::new(Location::File, "too few blocks to route")
            .expected("at least 3 blocks (the first and the last are never routed)")
            .found(format!("{depth} blocks"))
            .in_file(file));
    }
    let dense = analyse(g);
    let total = dense.total.flops.max(1) as f64;
    let route = |rate: f64, start: usize, end: usize| -> Result<crate::ir::Graph> {
        let given = parse_flag(&format!("{rate}:{start}-{end}"), 0)?;
        apply_routes(g, &resolve(&[given], depth, None, file)?)
    };
    // What routing each block alone saves at each rate: a block's routed cost depends only on
    // its kept tokens, so a span saves the sum of its blocks'.
    let mut saving = vec![vec![None; depth]; RATES.len()];
    for (ri, &rate) in RATES.iter().enumerate() {
        for (b, slot) in saving[ri].iter_mut().enumerate().take(depth - 1).skip(1) {
            if let Ok(routed) = route(rate, b, b) {
                let r = analyse(&routed);
                *slot = Some(dense.blocks[b].cost.flops as f64 - r.blocks[b].cost.flops as f64);
            }
        }
    }
    let mut candidates = Vec::new();
    let mut closest = f64::INFINITY;
    for (ri, &rate) in RATES.iter().enumerate() {
        for start in 1..depth - 1 {
            let mut saved = 0.0;
            for (end, block) in saving[ri].iter().enumerate().take(depth - 1).skip(start) {
                let Some(s) = *block else { break };
                saved += s;
                let ratio = (total - saved) / total;
                closest = closest.min(ratio);
                if ratio <= budget + 1e-12 {
                    let (p, why) = penalty(rate, start, end, depth);
                    candidates.push((p, ratio, rate, start, end, why));
                }
            }
        }
    }
    // Best placement first; among equals the smaller saving (routing no more than asked).
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut out = Vec::new();
    for (p, _, rate, start, end, why) in candidates {
        if out.len() == top {
            break;
        }
        // The span as a whole must route (the per-block check does not see every constraint);
        // its FLOPs are taken from the routed graph itself.
        let Ok(routed) = route(rate, start, end) else {
            continue;
        };
        let ratio = analyse(&routed).total.flops as f64 / total;
        if ratio > budget + 1e-12 {
            continue;
        }
        out.push(Proposal {
            route: format!("{rate}:{start}-{end}"),
            rate,
            start,
            end,
            flops_ratio: ratio,
            penalty: p,
            why,
        });
    }
    if out.is_empty() {
        return Err(
            bad_budget(format!("budget {budget}")).expected(if closest.is_finite() {
                format!("a budget ≥ {closest:.3} (the most any single route saves here)")
            } else {
                "a model with a routable block".to_string()
            }),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_model;

    fn model(name: &str) -> Model {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root.join("models").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        parse_model(&text, name).unwrap()
    }

    #[test]
    fn the_papers_placement_leads_when_it_fits() {
        let m = model("dit-xl2.json");
        let p = plan(&m, 0.6, 3).unwrap();
        assert_eq!(p[0].route, "0.5:2-24");
        assert_eq!(p[0].penalty, 0.0);
        assert!(
            (0.55..0.6).contains(&p[0].flops_ratio),
            "{}",
            p[0].flops_ratio
        );
        // Every proposal fits, none routes the first or the last block.
        for q in &p {
            assert!(q.flops_ratio <= 0.6 && q.start >= 1 && q.end <= 26, "{q:?}");
        }
        // A tighter budget moves away from the paper's placement, saying how.
        let tight = plan(&m, 0.5, 3).unwrap();
        assert!(
            tight[0].penalty > 0.0 && tight[0].flops_ratio <= 0.5,
            "{:?}",
            tight[0]
        );
        assert!(
            !tight[0].why.contains("the paper's placement"),
            "{}",
            tight[0].why
        );
    }

    #[test]
    fn a_budget_no_route_reaches_says_what_would() {
        let m = model("mnist-dit-small.json");
        let p = plan(&m, 0.95, 5).unwrap();
        assert_eq!(p[0].route, "0.5:2-2");
        let e = plan(&m, 0.1, 5).unwrap_err().to_string();
        assert!(e.contains("--budget") && e.contains("a budget ≥"), "{e}");
        assert!(plan(&m, 0.0, 5).is_err() && plan(&m, 1.5, 5).is_err());
    }

    #[test]
    fn multi_stream_models_plan_their_image_stream() {
        let m = model("mnist-mmdit-small.json");
        let p = plan(&m, 0.95, 3).unwrap();
        assert!(!p.is_empty());
        for q in &p {
            assert!(q.flops_ratio <= 0.95, "{q:?}");
        }
    }
}
