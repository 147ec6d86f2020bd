//! The compile driver: file → model → resolved routes → routed graph → analyses.
//! The CLI and the tests go through here, so both see exactly the same pipeline.

use std::path::Path;

use crate::analysis::{analyse, Analysis};
use crate::diag::{Location, Result};
use crate::ir::Graph;
use crate::parse::{parse_model, Model};
use crate::passes::apply_routes;
use crate::read::read_text;
use crate::route_spec::{resolve, GivenRoute, Route};

/// What to route.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Routes from the command line; when non-empty they replace the file's routes.
    pub routes: Vec<GivenRoute>,
    /// Ignore every route (file and command line): compile the dense graph only.
    pub dense: bool,
    /// Replace the rate of every route.
    pub rate_override: Option<f64>,
}

/// The result of compiling a model.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The parsed model (dense graph, declared routes, training recipe).
    pub model: Model,
    /// The routes applied.
    pub routes: Vec<Route>,
    /// The routed training graph (equal to the dense graph when no route is applied).
    pub routed: Graph,
    /// Analysis of the dense graph.
    pub dense_analysis: Analysis,
    /// Analysis of the routed graph.
    pub routed_analysis: Analysis,
}

/// Reads and compiles a model file.
pub fn compile_file(path: &Path, opts: &CompileOptions) -> Result<Compiled> {
    let file = path.display().to_string();
    let text = read_text(path, "model file", "a readable UTF-8 model.json")?;
    compile_str(&text, &file, opts)
}

/// Compiles model text (`file` names it in diagnostics).
pub fn compile_str(text: &str, file: &str, opts: &CompileOptions) -> Result<Compiled> {
    let model = parse_model(text, file)?;
    let given: &[GivenRoute] = if opts.dense {
        &[]
    } else if opts.routes.is_empty() {
        &model.routes
    } else {
        &opts.routes
    };
    let routes = resolve(given, model.graph.depth(), opts.rate_override, file)?;
    let routed = apply_routes(&model.graph, &routes).map_err(|d| {
        // Route diagnostics name the route; say where it was given.
        match (&d.location, d.file.is_empty()) {
            (Location::Route { index, .. }, true) => {
                let given = &given[*index];
                let src = match &given.origin {
                    crate::route_spec::RouteOrigin::Flag(t) => {
                        ("<command line>".to_string(), format!("--route {t}"))
                    }
                    crate::route_spec::RouteOrigin::File(p) => (file.to_string(), p.clone()),
                };
                let index = *index;
                d.with_location(Location::Route {
                    index,
                    given: src.1,
                })
                .in_file(src.0)
            }
            _ => d.in_file(file),
        }
    })?;
    let dense_analysis = analyse(&model.graph);
    let routed_analysis = analyse(&routed);
    Ok(Compiled {
        model,
        routes,
        routed,
        dense_analysis,
        routed_analysis,
    })
}
