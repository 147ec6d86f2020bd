//! Route specifications as users write them: `--route 0.5:2-8`, `--route 0.5:2-8@text`,
//! `--route paper`, or `"routes": [{"rate": 0.5, "start": 2, "end": 8, "stream": "image"}]` /
//! `"routes": "paper"` in model.json.
//!
//! Why a separate step from the pass: a spec is resolved against the model's depth (`paper` means
//! start 2, end depth − 4) and validated with a diagnostic that names where the route was given.

use crate::diag::{Diagnostic, Location, Result};

/// Where a route was written, for diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteOrigin {
    /// A `--route` flag, with its text.
    Flag(String),
    /// A model.json entry, with its JSON path.
    File(String),
}

impl RouteOrigin {
    fn describe(&self) -> String {
        match self {
            RouteOrigin::Flag(t) => format!("--route {t}"),
            RouteOrigin::File(p) => p.clone(),
        }
    }
}

/// A route before it is resolved against a model.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteSpec {
    /// An explicit route: rate, first block, last block (inclusive).
    Explicit { rate: f64, start: usize, end: usize },
    /// The paper's placement: rate 0.5, start 2, end depth − 4.
    Paper,
}

/// A spec with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct GivenRoute {
    /// What was asked for.
    pub spec: RouteSpec,
    /// Where it was asked for.
    pub origin: RouteOrigin,
    /// The stream it routes, when named (the image stream otherwise).
    pub stream: Option<String>,
}

/// A route resolved against a model's depth and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Fraction of the stream's tokens that bypass blocks `start..=end`.
    pub rate: f64,
    /// First routed block.
    pub start: usize,
    /// Last routed block, inclusive.
    pub end: usize,
    /// The stream whose tokens are routed; the others pass the region whole.
    pub stream: String,
}

/// The syntax, for help texts and errors.
pub const ROUTE_SYNTAX: &str =
    "RATE:START-END[@STREAM] (e.g. 0.5:2-8: half the image tokens skip blocks 2..=8; \
     @text routes the text stream instead) or `paper`";

/// Parses the text of one `--route` flag.
pub fn parse_flag(text: &str, index: usize) -> Result<GivenRoute> {
    let origin = RouteOrigin::Flag(text.to_string());
    let bad = |why: &str| {
        Diagnostic::new(
            Location::Route {
                index,
                given: format!("--route {text}"),
            },
            format!("cannot read route: {why}"),
        )
        .expected(ROUTE_SYNTAX)
        .found(format!("`{text}`"))
        .in_file("<command line>")
    };
    let (body, stream) = match text.split_once('@') {
        Some((b, s)) if crate::dims::is_identifier(s.trim()) => (b, Some(s.trim().to_string())),
        Some(_) => return Err(bad("STREAM after `@` is not a stream name")),
        None => (text, None),
    };
    if body.trim() == "paper" {
        return Ok(GivenRoute {
            spec: RouteSpec::Paper,
            origin,
            stream,
        });
    }
    let (rate, blocks) = body.split_once(':').ok_or_else(|| bad("no `:`"))?;
    let (start, end) = blocks
        .split_once('-')
        .ok_or_else(|| bad("no `-` between START and END"))?;
    let rate: f64 = rate
        .trim()
        .parse()
        .map_err(|_| bad("RATE is not a number"))?;
    let start: usize = start
        .trim()
        .parse()
        .map_err(|_| bad("START is not a block index"))?;
    let end: usize = end
        .trim()
        .parse()
        .map_err(|_| bad("END is not a block index"))?;
    Ok(GivenRoute {
        spec: RouteSpec::Explicit { rate, start, end },
        origin,
        stream,
    })
}

/// Resolves specs against a model of `depth` blocks and checks every rule of tread.md §1:
/// rate in [0, 1), 0 ≤ start ≤ end < depth, strictly ordered and non-overlapping.
/// `rate_override` replaces every route's rate. `file` names the source for file-given routes.
pub fn resolve(
    given: &[GivenRoute],
    depth: usize,
    rate_override: Option<f64>,
    file: &str,
) -> Result<Vec<Route>> {
    let mut out: Vec<Route> = Vec::with_capacity(given.len());
    for (k, g) in given.iter().enumerate() {
        let src = match &g.origin {
            RouteOrigin::Flag(_) => "<command line>",
            RouteOrigin::File(_) => file,
        };
        let here = |msg: String| {
            Diagnostic::new(
                Location::Route {
                    index: k,
                    given: g.origin.describe(),
                },
                msg,
            )
            .in_file(src)
        };
        let (rate, start, end) = match g.spec {
            RouteSpec::Explicit { rate, start, end } => (rate, start, end),
            RouteSpec::Paper => {
                if depth < 6 {
                    return Err(here(format!(
                        "the paper placement (start 2, end depth − 4) needs depth ≥ 6; this model has {depth} blocks"
                    ))
                    .expected("depth ≥ 6, or an explicit RATE:START-END")
                    .found(format!("depth {depth}")));
                }
                (0.5, 2, depth - 4)
            }
        };
        let rate = rate_override.unwrap_or(rate);
        if !(0.0..1.0).contains(&rate) || !rate.is_finite() {
            return Err(here("rate out of range".into())
                .expected("0 ≤ rate < 1 (the fraction of tokens that SKIP the blocks)")
                .found(rate.to_string()));
        }
        if start > end {
            return Err(here("start is after end".into())
                .expected("start ≤ end (end is inclusive)")
                .found(format!("start {start}, end {end}")));
        }
        if end >= depth {
            return Err(here("route ends past the last block".into())
                .expected(format!(
                    "end ≤ {} (the model has {depth} blocks)",
                    depth.saturating_sub(1)
                ))
                .found(format!("end {end}")));
        }
        if let Some(prev) = out.last() {
            if start <= prev.end {
                return Err(here("routes overlap or are out of order".into())
                    .expected(format!(
                        "start > {} (routes are ordered and strictly non-overlapping)",
                        prev.end
                    ))
                    .found(format!(
                        "route {} covers {}..={}, this one {start}..={end}",
                        k - 1,
                        prev.start,
                        prev.end
                    )));
            }
        }
        let stream = g
            .stream
            .clone()
            .unwrap_or_else(|| crate::ir::IMAGE_STREAM.to_string());
        out.push(Route {
            rate,
            start,
            end,
            stream,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        let r = parse_flag("0.5:2-8", 0).unwrap();
        assert_eq!(
            r.spec,
            RouteSpec::Explicit {
                rate: 0.5,
                start: 2,
                end: 8
            }
        );
        assert_eq!(parse_flag("paper", 0).unwrap().spec, RouteSpec::Paper);
        assert_eq!(
            parse_flag("0.5:2-8@text", 0).unwrap().stream.as_deref(),
            Some("text")
        );
        assert_eq!(parse_flag("0.5:2-8", 0).unwrap().stream, None);
        assert!(parse_flag("0.5:2-8@", 0).is_err() && parse_flag("0.5:2-8@t x", 0).is_err());
        for bad in [
            "", "0.5", "0.5:2", "x:1-2", "0.5:a-2", "0.5:1-b", "0.5:-1-2",
        ] {
            assert!(parse_flag(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn paper_placement_follows_depth() {
        let g = [parse_flag("paper", 0).unwrap()];
        let r = resolve(&g, 28, None, "m").unwrap();
        assert_eq!(
            r,
            [Route {
                rate: 0.5,
                start: 2,
                end: 24,
                stream: "image".into()
            }]
        );
        assert!(resolve(&g, 5, None, "m").is_err());
    }

    #[test]
    fn validation_rules() {
        let check = |specs: &[&str], depth| {
            let g: Vec<_> = specs
                .iter()
                .enumerate()
                .map(|(i, s)| parse_flag(s, i).unwrap())
                .collect();
            resolve(&g, depth, None, "m")
        };
        assert!(check(&["0.5:2-8"], 12).is_ok());
        assert!(check(&["0:0-11"], 12).is_ok());
        assert!(check(&["1.0:2-8"], 12).is_err());
        assert!(check(&["-0.1:2-8"], 12).is_err());
        assert!(check(&["0.5:8-2"], 12).is_err());
        assert!(check(&["0.5:2-12"], 12).is_err());
        assert!(check(&["0.5:2-5", "0.5:5-8"], 12).is_err());
        assert!(check(&["0.5:6-8", "0.5:2-5"], 12).is_err());
        assert!(check(&["0.5:2-5", "0.3:6-8"], 12).is_ok());
    }

    #[test]
    fn override_replaces_rates() {
        let g = [parse_flag("0.5:2-8", 0).unwrap()];
        assert_eq!(resolve(&g, 12, Some(0.25), "m").unwrap()[0].rate, 0.25);
        assert!(resolve(&g, 12, Some(1.5), "m").is_err());
    }
}
