//! The sampling loops (tread.md §3–4) on host buffers: EDM's deterministic Heun over the Karras
//! σ's, Euler for flow models, and the guidance combination. `treadc sample` (burn) and
//! `treadc run` (tract, no burn) both drive these loops with their own denoiser, so they agree by
//! construction up to the denoiser's arithmetic. No tensor library here.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tread_compiler::config::Objective;
use tread_compiler::edm::edm_sigmas;

use tread_compiler::diag::{Diagnostic, Location};

use crate::condition::Condition;
use crate::data::dataset::StoredTexts;
use crate::init::normal;
use crate::text::{canonical_prompt, digit_named, TextEncoder, TextError};

/// What to draw: one request for `treadc sample` (burn, a run's checkpoint) and `treadc run`
/// (tract, an exported file). The last two fields are burn-only; `treadc run` refuses them.
#[derive(Debug, Clone, Default)]
pub struct SampleRequest {
    /// Number of images.
    pub n: usize,
    /// Sampler steps (EDM Heun; Euler for flow models).
    pub steps: usize,
    /// Seed of the initial noise.
    pub seed: u64,
    /// Classifier-free guidance scale.
    pub cfg: Option<f64>,
    /// One class for every image (default: cycle through the classes).
    pub class: Option<i64>,
    /// One text prompt for every image (text-conditioned models; default: each class's
    /// canonical prompt in turn).
    pub prompt: Option<String>,
    /// Stored text contexts to draw for in turn (`--context FILE`; text-conditioned models).
    pub stored: Option<StoredTexts>,
    /// Sparse guidance (strong rate, weak rate, scale): two routed conditional passes (burn only).
    pub sparse: Option<(f64, f64, f64)>,
    /// Sample from the raw weights instead of the EMA (burn only; an export chose its weights).
    pub raw: bool,
}

/// The initial noise of a sampling run: `len` standard normals from `seed` (the same draw in
/// every sampler).
pub fn initial_noise(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| normal(&mut rng)).collect()
}

/// Labels for a grid of `n` samples: 0, 1, ..., classes−1, 0, 1, ...
pub fn grid_labels(n: usize, classes: Option<usize>) -> Option<Vec<i64>> {
    classes.map(|k| (0..n).map(|i| (i % k) as i64).collect())
}

/// The labels of `n` samples: `class` for all (checked against the class count), else
/// [`grid_labels`]; `None` for unconditional models.
pub fn sample_labels(
    classes: Option<usize>,
    class: Option<i64>,
    n: usize,
) -> Result<Option<Vec<i64>>, Diagnostic> {
    Ok(match (classes, class) {
        (Some(k), Some(c)) if c < 0 || c as usize >= k => {
            return Err(
                Diagnostic::new(Location::Item("--class".into()), "class out of range")
                    .expected(format!("0 ≤ class < {k}"))
                    .found(c.to_string())
                    .in_file("<command line>"),
            )
        }
        (Some(_), Some(c)) => Some(vec![c; n]),
        (k, None) => grid_labels(n, k),
        (None, Some(_)) => None,
    })
}

/// The classes a request asks for and the samples' conditioning: stored contexts in turn
/// (`--context`), or `--prompt` (text models) for every sample, else `--class` or the classes in
/// turn (as canonical prompts for a text model).
pub fn conditioning(
    text: Option<&TextEncoder>,
    classes: Option<usize>,
    req: &SampleRequest,
) -> Result<(Option<Vec<i64>>, Condition), Diagnostic> {
    let prompt_err = |e: TextError| {
        let expected = match (&e, text) {
            (TextError::UnknownWord { .. }, Some(enc)) => {
                format!("words of the vocabulary: {}", enc.tokenizer.listing())
            }
            _ => format!("at most {} words", text.map_or(0, |e| e.dims.len)),
        };
        Diagnostic::new(
            Location::Item("--prompt".into()),
            "the prompt cannot be encoded",
        )
        .expected(expected)
        .found(e.to_string())
        .in_file("<command line>")
    };
    if let Some(stored) = &req.stored {
        let dims = text.map(|e| e.dims);
        let (fitted, _) = stored.clone().fit(dims, "the model")?;
        let (labels, texts) = fitted.in_turn(req.n);
        return Ok((labels, Condition::Text(texts)));
    }
    match (&req.prompt, text) {
        (Some(p), Some(enc)) => {
            let ids = enc.tokenize(p).map_err(prompt_err)?;
            let labels = digit_named(p).map(|d| vec![d as i64; req.n]);
            Ok((labels, Condition::Text(enc.encode_ids(&vec![ids; req.n]))))
        }
        (Some(_), None) => Err(Diagnostic::new(
            Location::Item("--prompt".into()),
            "the model is not text-conditioned",
        )
        .expected("a model with a `context` input")
        .found("a model without one (use --class)")
        .in_file("<command line>")),
        (None, _) => {
            let labels = sample_labels(classes, req.class, req.n)?;
            let cond = Condition::of_classes(labels.as_deref(), text).map_err(prompt_err)?;
            Ok((labels, cond))
        }
    }
}

/// The prompt of each of a request's `n` samples, for labelling grids: `--prompt`, or the
/// canonical prompts of `labels`; `None` for a model without text or stored contexts (whose
/// texts have no words).
pub fn prompts_of(text: bool, req: &SampleRequest, labels: Option<&[i64]>) -> Option<Vec<String>> {
    if !text || req.stored.is_some() {
        return None;
    }
    match (&req.prompt, labels) {
        (Some(p), _) => Some(vec![p.clone(); req.n]),
        (None, Some(l)) => Some(l.iter().map(|&d| canonical_prompt(d as usize)).collect()),
        (None, None) => None,
    }
}

/// Parses `--sparse-guidance STRONG,WEAK,SCALE` (two routing rates in [0, 1) and a scale).
pub fn parse_sparse_guidance(s: &str) -> Result<(f64, f64, f64), Diagnostic> {
    let v: Vec<Option<f64>> = s.split(',').map(|x| x.trim().parse().ok()).collect();
    match v[..] {
        [Some(strong), Some(weak), Some(scale)]
            if (0.0..1.0).contains(&strong) && (0.0..1.0).contains(&weak) && scale.is_finite() =>
        {
            Ok((strong, weak, scale))
        }
        _ => Err(
            Diagnostic::new(Location::Item("--sparse-guidance".into()), "bad argument")
                .expected("STRONG,WEAK,SCALE with rates in [0, 1), e.g. 0.3,0.7,1.5")
                .found(s.to_string())
                .in_file("<command line>"),
        ),
    }
}

/// Guidance `base + scale·(toward − base)`: CFG (`base` unconditional, `toward` conditional) or
/// sparse guidance (`base` the weak routed pass, `toward` the strong one).
pub fn guide(toward: &[f32], base: &[f32], scale: f64) -> Vec<f32> {
    let s = scale as f32;
    toward
        .iter()
        .zip(base)
        .map(|(&t, &b)| b + (t - b) * s)
        .collect()
}

/// Runs the sampler from `noise` (standard normal) and returns the final images.
/// `predict(x, level)` is the model's prediction at noise level `level`: EDM's denoised image
/// D(x; σ) or the flow velocity v(x, t).
pub fn run_sampler(
    objective: Objective,
    steps: usize,
    noise: Vec<f32>,
    mut predict: impl FnMut(&[f32], f64) -> Result<Vec<f32>, String>,
) -> Result<Vec<f32>, String> {
    let mut x = noise;
    let axpy = |x: &[f32], d: &[f32], a: f64| -> Vec<f32> {
        let a = a as f32;
        x.iter().zip(d).map(|(&x, &d)| x + d * a).collect()
    };
    let slope = |x: &[f32], denoised: &[f32], sigma: f64| -> Vec<f32> {
        let s = sigma as f32;
        x.iter().zip(denoised).map(|(&x, &d)| (x - d) / s).collect()
    };
    match objective {
        Objective::Edm => {
            let sig = edm_sigmas(steps);
            let s0 = sig[0] as f32;
            x.iter_mut().for_each(|v| *v *= s0);
            for i in 0..steps {
                let (s, s_next) = (sig[i], sig[i + 1]);
                let d = slope(&x, &predict(&x, s)?, s);
                let x_euler = axpy(&x, &d, s_next - s);
                x = if s_next > 0.0 {
                    let d2 = slope(&x_euler, &predict(&x_euler, s_next)?, s_next);
                    let mean: Vec<f32> = d.iter().zip(&d2).map(|(a, b)| a + b).collect();
                    axpy(&x, &mean, 0.5 * (s_next - s))
                } else {
                    x_euler
                };
            }
        }
        Objective::Flow => {
            let dt = 1.0 / steps as f64;
            for i in 0..steps {
                let t = 1.0 - i as f64 * dt;
                let v = predict(&x, t)?;
                x = axpy(&x, &v, -dt);
            }
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a perfect denoiser of a single point x*, EDM Heun lands on x*: the loop, the
    /// schedule and the final Euler step are wired right.
    #[test]
    fn edm_heun_converges_to_the_denoisers_point() {
        let target = [0.25f32, -0.5, 0.75];
        let out = run_sampler(Objective::Edm, 12, initial_noise(1, 3), |_, _| {
            Ok(target.to_vec())
        })
        .unwrap();
        for (o, t) in out.iter().zip(target) {
            assert!((o - t).abs() < 1e-4, "{out:?}");
        }
    }

    /// Flow: x₁ = noise, v = noise − x₀ exactly; Euler from t=1 to 0 recovers x₀.
    #[test]
    fn flow_euler_follows_a_straight_path() {
        let noise = initial_noise(2, 4);
        let x0 = [1.0f32, 0.0, -1.0, 0.5];
        let v: Vec<f32> = noise.iter().zip(x0).map(|(n, x)| n - x).collect();
        let out = run_sampler(Objective::Flow, 7, noise, |_, _| Ok(v.clone())).unwrap();
        for (o, t) in out.iter().zip(x0) {
            assert!((o - t).abs() < 1e-5, "{out:?}");
        }
    }

    #[test]
    fn guide_scales_the_difference() {
        assert_eq!(guide(&[3.0], &[1.0], 1.5), vec![4.0]);
        assert_eq!(guide(&[3.0], &[1.0], 0.0), vec![1.0]);
    }
}
