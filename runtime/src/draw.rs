//! `treadc sample` and `treadc eval`'s draws: images from a saved run on a burn backend,
//! with CFG or sparse guidance. The request is the one `treadc run` (tract) takes too.

use std::path::Path;

use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::ir::Graph;

use crate::data::clips::ClipShape;
use crate::lower::backends::{guarded, BackendKind};
use crate::lower::sample::{Guidance, SampleSpec};
use crate::model::{clip_shape, model_io};
use crate::restore::load_run;
use crate::run_error::RunError;
use crate::sampler::{conditioning, prompts_of, SampleRequest};

/// What [`sample`] drew, and from what.
#[derive(Debug, Clone)]
pub struct Samples {
    /// `n × C × H × W` values in the training data's range.
    pub images: Vec<f32>,
    /// Number of samples.
    pub n: usize,
    /// `[C, H, W]` (a video model's clips as `[C, F·H, W]`).
    pub shape: [usize; 3],
    /// A video model's frame layout.
    pub clip: Option<ClipShape>,
    /// The class each sample was drawn for (`None`: an unconditional model, or a prompt that
    /// names no single digit).
    pub labels: Option<Vec<i64>>,
    /// Each sample's prompt (text models drawn for words, not stored contexts), for labels.
    pub prompts: Option<Vec<String>>,
    /// The model's class count (`None`: unconditional).
    pub classes: Option<usize>,
    /// The checkpoint's training step.
    pub step: u64,
}

/// Samples from a run folder or checkpoint file on backend `kind`.
pub fn sample(kind: BackendKind, path: &Path, req: &SampleRequest) -> Result<Samples, RunError> {
    guarded(kind, || sample_in(kind, path, req), RunError::Failed)
}

fn sample_in(kind: BackendKind, path: &Path, req: &SampleRequest) -> Result<Samples, RunError> {
    let (t, compiled, _) = load_run(kind, path)?;
    let (shape, classes) = model_io(&compiled)?;
    let (labels, cond) = conditioning(t.recipe().text.as_ref(), classes, req)?;
    let guidance = match (req.cfg, req.sparse) {
        (Some(s), None) => Guidance::Cfg { scale: s },
        (None, Some((strong, weak, s))) => {
            let g = |rate: f64| -> Result<Graph, RunError> {
                if compiled.routes.is_empty() {
                    return Err(RunError::Diag(
                        Diagnostic::new(
                            Location::Item("--sparse-guidance".into()),
                            "the model was trained without routes",
                        )
                        .expected("a routed run")
                        .found("no routes")
                        .in_file("<command line>"),
                    ));
                }
                let routes: Vec<_> = compiled
                    .routes
                    .iter()
                    .map(|r| tread_compiler::route_spec::Route { rate, ..r.clone() })
                    .collect();
                Ok(tread_compiler::passes::apply_routes(
                    &compiled.model.graph,
                    &routes,
                )?)
            };
            Guidance::Sparse {
                strong: Box::new(g(strong)?),
                weak: Box::new(g(weak)?),
                scale: s,
            }
        }
        (None, None) => Guidance::None,
        (Some(_), Some(_)) => {
            return Err(RunError::Diag(
                Diagnostic::new(
                    Location::Item("--cfg/--sparse-guidance".into()),
                    "two kinds of guidance at once",
                )
                .expected("--cfg or --sparse-guidance")
                .found("both")
                .in_file("<command line>"),
            ))
        }
    };
    let spec = SampleSpec {
        shape,
        cond,
        n: req.n,
        steps: req.steps,
        seed: req.seed,
        null_label: classes.unwrap_or(0) as i64,
    };
    let images = t
        .sample(&spec, &guidance, !req.raw)
        .map_err(RunError::Failed)?;
    Ok(Samples {
        images,
        n: req.n,
        shape,
        clip: clip_shape(&compiled),
        prompts: prompts_of(t.recipe().text.is_some(), req, labels.as_deref()),
        labels,
        classes,
        step: t.step(),
    })
}
