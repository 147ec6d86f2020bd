//! The compile report: a human summary and a JSON object for scripts
//! (`{"params", "gflops": {"dense", "routed"}, "routes": [...], ...}`).

use std::fmt::Write;

use serde::Serialize;

use crate::compile::Compiled;
use crate::ir::IMAGE_STREAM;

/// One route in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RouteReport {
    /// Fraction of tokens routed (skipping the blocks).
    pub rate: f64,
    /// First routed block.
    pub start: usize,
    /// Last routed block (inclusive).
    pub end: usize,
    /// Tokens entering the region.
    pub tokens: u64,
    /// Tokens processed by the region.
    pub keep: u64,
    /// Whether kept indices are sorted (order-sensitive mixer inside).
    pub sorted: bool,
    /// The routed stream (`tokens` and `keep` count its tokens).
    pub stream: String,
    /// Each stream on the token axis entering the region, with the tokens the region processes:
    /// the image stream's are routed, the others pass whole.
    pub streams: Vec<StreamReport>,
}

/// One stream's tokens in a routed region.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// Stream name (`image`, `text`, ...).
    pub stream: String,
    /// Its tokens entering the region.
    pub tokens: u64,
    /// Its tokens the region processes.
    pub kept: u64,
}

/// Where the FLOPs go: the token-mixing products (attention's QKᵀ and AV, token convolutions)
/// against the per-token layers (projections, MLPs, modulation), dense and routed.
#[derive(Debug, Clone, Serialize)]
pub struct FlopsSplit {
    /// Token-mixing GFLOPs per sample.
    pub mixing: Gflops,
    /// Per-token GFLOPs per sample.
    pub per_token: Gflops,
}

/// One block in the report.
#[derive(Debug, Clone, Serialize)]
pub struct BlockReport {
    /// Block index.
    pub block: usize,
    /// Tokens processed, dense.
    pub tokens_dense: u64,
    /// Tokens processed, routed.
    pub tokens_routed: u64,
    /// Forward GFLOPs per sample, dense.
    pub gflops_dense: f64,
    /// Forward GFLOPs per sample, routed.
    pub gflops_routed: f64,
}

/// Dense and routed GFLOPs.
#[derive(Debug, Clone, Serialize)]
pub struct Gflops {
    /// Dense forward GFLOPs per sample.
    pub dense: f64,
    /// Routed forward GFLOPs per sample.
    pub routed: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Model name.
    pub model: String,
    /// Source file.
    pub file: String,
    /// Number of trunk blocks.
    pub depth: usize,
    /// All parameters, including fixed tables (the DiT paper's count).
    pub params: u64,
    /// Trainable parameters.
    pub trainable_params: u64,
    /// Fixed, non-trainable tensors (sin-cos position table).
    pub fixed_params: u64,
    /// Forward GFLOPs per sample (multiply-add = 1).
    pub gflops: Gflops,
    /// routed / dense FLOPs.
    pub flops_ratio: f64,
    /// The GFLOPs split into token mixing and per-token layers.
    pub gflops_split: FlopsSplit,
    /// Routes applied.
    pub routes: Vec<RouteReport>,
    /// Per block.
    pub blocks: Vec<BlockReport>,
}

impl Report {
    /// Builds the report of a compiled model.
    pub fn new(c: &Compiled) -> Self {
        let d = &c.dense_analysis;
        let r = &c.routed_analysis;
        let g = |f: u64| f as f64 / 1e9;
        Report {
            model: c.model.graph.name.clone(),
            file: c.model.file.clone(),
            depth: c.model.graph.depth(),
            params: d.total.params + d.total.fixed,
            trainable_params: d.total.params,
            fixed_params: d.total.fixed,
            gflops: Gflops {
                dense: g(d.total.flops),
                routed: g(r.total.flops),
            },
            flops_ratio: r.total.flops as f64 / d.total.flops.max(1) as f64,
            gflops_split: FlopsSplit {
                mixing: Gflops {
                    dense: g(d.total.mixing_flops),
                    routed: g(r.total.mixing_flops),
                },
                per_token: Gflops {
                    dense: g(d.total.flops - d.total.mixing_flops),
                    routed: g(r.total.flops - r.total.mixing_flops),
                },
            },
            routes: c
                .routed
                .routes
                .iter()
                .map(|x| RouteReport {
                    rate: x.rate,
                    start: x.start,
                    end: x.end,
                    tokens: x.tokens,
                    keep: x.keep,
                    sorted: x.sorted,
                    stream: x.stream.clone(),
                    streams: route_streams(c, x.start, x.keep, &x.stream),
                })
                .collect(),
            blocks: d
                .blocks
                .iter()
                .zip(&r.blocks)
                .map(|(a, b)| BlockReport {
                    block: a.block,
                    tokens_dense: a.tokens,
                    tokens_routed: b.tokens,
                    gflops_dense: g(a.cost.flops),
                    gflops_routed: g(b.cost.flops),
                })
                .collect(),
        }
    }

    /// The human summary.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} ({}): {} blocks", self.model, self.file, self.depth);
        let _ = writeln!(
            s,
            "params: {} ({} trainable + {} fixed)",
            group(self.params),
            group(self.trainable_params),
            group(self.fixed_params)
        );
        if self.routes.is_empty() {
            let hint = if self.depth >= 6 {
                "; try --route paper"
            } else {
                ""
            };
            let _ = writeln!(s, "routes: none (dense){hint}");
        }
        for (k, r) in self.routes.iter().enumerate() {
            let _ = writeln!(
                s,
                "route {k}: rate {} over blocks {}..={}: {} of {} tokens skip, {} kept{}",
                r.rate,
                r.start,
                r.end,
                r.tokens - r.keep,
                r.tokens,
                r.keep,
                if r.sorted {
                    " (sorted: order-sensitive mixer)"
                } else {
                    ""
                }
            );
            let passing: Vec<String> = r
                .streams
                .iter()
                .filter(|x| x.stream != r.stream)
                .map(|x| format!("{} {} tokens", x.stream, x.tokens))
                .collect();
            if !passing.is_empty() || r.stream != IMAGE_STREAM {
                let _ = writeln!(
                    s,
                    "  routes the {} stream; passing whole: {}",
                    r.stream,
                    if passing.is_empty() {
                        "nothing else".to_string()
                    } else {
                        passing.join(", ")
                    }
                );
            }
        }
        let _ = writeln!(
            s,
            "tokens per block: {}",
            self.blocks
                .iter()
                .map(|b| b.tokens_routed.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let _ = writeln!(
            s,
            "forward GFLOPs per sample: dense {} -> routed {} (x{:.3}, predicted saving {:.1}%)",
            gflops(self.gflops.dense),
            gflops(self.gflops.routed),
            self.flops_ratio,
            (1.0 - self.flops_ratio) * 100.0
        );
        if !self.routes.is_empty() {
            let part = |name: &str, x: &Gflops| {
                format!(
                    "{name} {} -> {} (saves {:.1}%)",
                    gflops(x.dense),
                    gflops(x.routed),
                    (1.0 - x.routed / x.dense.max(f64::MIN_POSITIVE)) * 100.0
                )
            };
            let _ = writeln!(
                s,
                "  {}; {}",
                part("token mixing (QKᵀ, AV)", &self.gflops_split.mixing),
                part("per-token layers", &self.gflops_split.per_token)
            );
        }
        s
    }
}

/// The streams of the trunk value entering block `start`, with what the region keeps of each.
fn route_streams(c: &Compiled, start: usize, keep: u64, routed: &str) -> Vec<StreamReport> {
    let g = &c.model.graph;
    g.ty(g.blocks[start].entry)
        .segments
        .iter()
        .map(|s| StreamReport {
            stream: s.stream.clone(),
            tokens: s.tokens,
            kept: if s.stream == routed { keep } else { s.tokens },
        })
        .collect()
}

/// Two decimals, or four significant digits below 1 GFLOP (small models).
fn gflops(g: f64) -> String {
    if g >= 1.0 {
        format!("{g:.2}")
    } else {
        format!("{g:.4}")
    }
}

/// `32957200` → `32,957,200`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_digits() {
        assert_eq!(super::group(32957200), "32,957,200");
        assert_eq!(super::group(999), "999");
        assert_eq!(super::group(1000), "1,000");
    }
}
