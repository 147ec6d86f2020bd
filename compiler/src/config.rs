//! The `training` section of model.json: the recipe a preset is meant to be trained with.
//!
//! Why in the model file: a run is reproducible from the file alone (objective, init, optimiser,
//! EMA decay suited to the run length). The compiler validates it; the runtime consumes it.

use crate::diag::{Diagnostic, Result};
use crate::parse::fields::Fields;

/// Diffusion objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// EDM preconditioning and loss (the official TREAD code's default).
    Edm,
    /// Rectified flow / SiT-style velocity prediction.
    Flow,
}

impl Objective {
    /// The name used in model.json and in export metadata.
    pub fn name(self) -> &'static str {
        match self {
            Objective::Edm => "edm",
            Objective::Flow => "flow",
        }
    }

    /// Parses [`Objective::name`]'s output.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "edm" => Some(Objective::Edm),
            "flow" => Some(Objective::Flow),
            _ => None,
        }
    }
}

/// Parameter initialisation scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Xavier-uniform everywhere (what the official TREAD code does).
    Xavier,
    /// DiT's adaLN-Zero: modulation and final linears start at zero.
    AdalnZero,
}

/// Training recipe (defaults: tread.md §3).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingConfig {
    /// Objective.
    pub objective: Objective,
    /// Init scheme.
    pub init: Init,
    /// AdamW learning rate.
    pub lr: f64,
    /// Linear learning-rate warm-up over this many steps (0: none): step `s` (0-based) uses
    /// `lr · min(1, (s+1)/lr_warmup)`.
    pub lr_warmup: u64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// EMA decay.
    pub ema_decay: f64,
    /// Use the warm-up `min(decay, (1+step)/(10+step))` for short runs.
    pub ema_warmup: bool,
    /// Probability that a label is replaced by the null label.
    pub class_dropout: f64,
    /// Default batch size.
    pub batch: u64,
    /// EDM's noise-level distribution during training: ln σ ~ N(p_mean, p_std²).
    pub p_mean: f64,
    /// See `p_mean`.
    pub p_std: f64,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            objective: Objective::Edm,
            init: Init::Xavier,
            lr: 1e-4,
            lr_warmup: 0,
            weight_decay: 0.0,
            ema_decay: 0.9999,
            ema_warmup: false,
            class_dropout: 0.1,
            batch: 256,
            p_mean: -1.2,
            p_std: 1.2,
        }
    }
}

const KEYS: [&str; 11] = [
    "p_mean",
    "p_std",
    "objective",
    "init",
    "lr",
    "lr_warmup",
    "weight_decay",
    "ema_decay",
    "ema_warmup",
    "class_dropout",
    "batch",
];

impl TrainingConfig {
    /// Reads the `training` object.
    pub fn parse(f: &Fields) -> Result<Self> {
        let d = TrainingConfig::default();
        let objective = match f.opt_str("objective")? {
            None | Some("edm") => Objective::Edm,
            Some("flow") => Objective::Flow,
            Some(o) => {
                return Err(Diagnostic::at_path(f.at("objective"), "unknown objective")
                    .expected("\"edm\" or \"flow\"")
                    .found(format!("\"{o}\"")))
            }
        };
        let init = match f.opt_str("init")? {
            None | Some("xavier") => Init::Xavier,
            Some("adaln_zero") => Init::AdalnZero,
            Some(o) => {
                return Err(Diagnostic::at_path(f.at("init"), "unknown init")
                    .expected("\"xavier\" or \"adaln_zero\"")
                    .found(format!("\"{o}\"")))
            }
        };
        let unit = |key: &str, v: Option<f64>, dflt: f64, hi_open: bool| -> Result<f64> {
            let x = v.unwrap_or(dflt);
            let ok = x >= 0.0 && if hi_open { x < 1.0 } else { x <= 1.0 };
            if ok {
                Ok(x)
            } else {
                Err(
                    Diagnostic::at_path(f.at(key), format!("`{key}` out of range"))
                        .expected(if hi_open {
                            "0 ≤ value < 1"
                        } else {
                            "0 ≤ value ≤ 1"
                        })
                        .found(x.to_string()),
                )
            }
        };
        let lr = f.opt_f64("lr")?.unwrap_or(d.lr);
        if lr <= 0.0 {
            return Err(
                Diagnostic::at_path(f.at("lr"), "learning rate must be positive")
                    .expected("lr > 0")
                    .found(lr.to_string()),
            );
        }
        let lr_warmup = match f.get("lr_warmup") {
            None => d.lr_warmup,
            Some(v) => v.as_u64().ok_or_else(|| {
                Diagnostic::at_path(f.at("lr_warmup"), "bad warm-up length")
                    .expected("a number of steps ≥ 0")
                    .found(crate::parse::fields::describe(v))
            })?,
        };
        let p_mean = f.opt_f64("p_mean")?.unwrap_or(d.p_mean);
        let p_std = f.opt_f64("p_std")?.unwrap_or(d.p_std);
        if !(p_std > 0.0 && p_std.is_finite() && p_mean.is_finite()) {
            return Err(
                Diagnostic::at_path(f.at("p_std"), "bad noise-level distribution")
                    .expected("a finite p_mean and p_std > 0")
                    .found(format!("p_mean {p_mean}, p_std {p_std}")),
            );
        }
        let cfg = TrainingConfig {
            objective,
            init,
            lr,
            lr_warmup,
            weight_decay: unit(
                "weight_decay",
                f.opt_f64("weight_decay")?,
                d.weight_decay,
                false,
            )?,
            ema_decay: unit("ema_decay", f.opt_f64("ema_decay")?, d.ema_decay, true)?,
            ema_warmup: f.opt_bool("ema_warmup")?.unwrap_or(d.ema_warmup),
            class_dropout: unit(
                "class_dropout",
                f.opt_f64("class_dropout")?,
                d.class_dropout,
                true,
            )?,
            batch: match f.get("batch") {
                None => d.batch,
                Some(v) => v.as_u64().filter(|&b| b > 0).ok_or_else(|| {
                    Diagnostic::at_path(f.at("batch"), "bad batch size")
                        .expected("an integer ≥ 1")
                        .found(crate::parse::fields::describe(v))
                })?,
            },
            p_mean,
            p_std,
        };
        f.finish(&KEYS)?;
        Ok(cfg)
    }
}
