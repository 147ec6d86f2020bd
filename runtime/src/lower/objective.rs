//! Diffusion objectives (tread.md §3) and the denoiser they define.
//!
//! EDM: ln σ ~ N(p_mean, p_std²) (the model file's; EDM's −1.2, 1.2 by default), σ_data 0.5, D(x; σ) = c_skip·x + c_out·F(c_in·x, ln(σ)/4, y),
//! loss = mean λ(σ)·(D(x + σε) − x)². Rectified flow: t = sigmoid(N(0,1)), z = (1−t)x + tε,
//! loss = mean (ε − x − v(z, t, y))². Per-sample scalars are drawn on the host.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use tread_compiler::config::{Objective, TrainingConfig};
use tread_compiler::ir::Graph;

use super::forward::{forward, Conditioning, Inputs};
use super::fused::FusedOps;
use super::store::ParamStore;
use super::value::OpResult;
use crate::init::normal;
use crate::routing::RouteSource;

pub use tread_compiler::edm::{Precond, SIGMA_DATA};

/// A per-sample scalar as a `[B, C, H, W]`-shaped tensor (materialised: burn-flex 0.21 walks
/// 4-D broadcasts element by element).
fn col<B: Backend>(v: &[f64], like: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
    let per = like[1] * like[2] * like[3];
    let f: Vec<f32> = v
        .iter()
        .flat_map(|&x| std::iter::repeat_n(x as f32, per))
        .collect();
    Tensor::from_data(TensorData::new(f, like), device)
}

fn vec1<B: Backend>(v: &[f64], device: &B::Device) -> Tensor<B, 1> {
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(f, [v.len()]), device)
}

/// The network `F` (or `v`) of graph `g`.
fn net<B: FusedOps>(
    g: &Graph,
    params: &ParamStore<B>,
    image: Tensor<B, 4>,
    noise: Tensor<B, 1>,
    cond: &Conditioning<B>,
    routes: &mut dyn RouteSource,
) -> OpResult<Tensor<B, 4>> {
    let inputs = Inputs {
        image,
        noise_level: noise,
        label: cond.label.clone(),
        extra: cond.extra.clone(),
    };
    forward(g, params, &inputs, routes)?.image()
}

/// The training loss on a batch `x0 [B, C, H, W]` with its conditioning (after dropout).
///
/// `rngs` holds one stream per sample: sample `i` draws its noise image, then its σ (or t),
/// from `rngs[i]` alone, so a sample's draws do not depend on the batch it is computed in (what
/// makes a batch split over data-parallel peers equal to the whole batch in one process).
pub fn training_loss<B: FusedOps>(
    training: &TrainingConfig,
    g: &Graph,
    params: &ParamStore<B>,
    x0: Tensor<B, 4>,
    cond: &Conditioning<B>,
    rngs: &mut [ChaCha8Rng],
    routes: &mut dyn RouteSource,
) -> OpResult<Tensor<B, 1>> {
    let [b, c, h, w] = x0.dims();
    if rngs.len() != b {
        return Err(format!(
            "training_loss: {} random streams for a batch of {b}",
            rngs.len()
        ));
    }
    let dims = [b, c, h, w];
    let device = x0.device();
    let per = c * h * w;
    let mut eps_host: Vec<f32> = Vec::with_capacity(b * per);
    let mut level = Vec::with_capacity(b);
    for rng in rngs.iter_mut() {
        eps_host.extend((0..per).map(|_| normal(rng)));
        level.push(normal(rng) as f64);
    }
    let eps = Tensor::<B, 4>::from_data(TensorData::new(eps_host, [b, c, h, w]), &device);
    let objective = training.objective;
    match objective {
        Objective::Edm => {
            let (mean, std) = (training.p_mean, training.p_std);
            let sigma: Vec<f64> = level.iter().map(|&z| (mean + std * z).exp()).collect();
            let weight: Vec<f64> = sigma.iter().map(|&s| Precond::edm(s).weight).collect();
            let y = x0.clone() + eps * col::<B>(&sigma, dims, &device);
            let d = predict(objective, g, params, y, &sigma, cond, routes)?;
            Ok(((d - x0).powi_scalar(2) * col::<B>(&weight, dims, &device)).mean())
        }
        Objective::Flow => {
            let t: Vec<f64> = level.iter().map(|&z| 1.0 / (1.0 + (-z).exp())).collect();
            let tt = col::<B>(&t, dims, &device);
            let z = x0.clone() * (tt.clone().neg() + 1.0) + eps.clone() * tt;
            let v = net(g, params, z, vec1::<B>(&t, &device), cond, routes)?;
            Ok((v - (eps - x0)).powi_scalar(2).mean())
        }
    }
}

/// The model's prediction used by samplers: EDM's denoised image D(x; σ) or the flow velocity
/// v(x, t); `level` is σ (EDM) or t (flow), one per sample.
pub fn predict<B: FusedOps>(
    objective: Objective,
    g: &Graph,
    params: &ParamStore<B>,
    x: Tensor<B, 4>,
    level: &[f64],
    cond: &Conditioning<B>,
    routes: &mut dyn RouteSource,
) -> OpResult<Tensor<B, 4>> {
    let device = x.device();
    let dims = x.dims();
    match objective {
        Objective::Edm => {
            let pc: Vec<Precond> = level.iter().map(|&s| Precond::edm(s)).collect();
            let get = |f: fn(&Precond) -> f64| pc.iter().map(f).collect::<Vec<_>>();
            let f = net(
                g,
                params,
                x.clone() * col::<B>(&get(|p| p.c_in), dims, &device),
                vec1::<B>(&get(|p| p.c_noise), &device),
                cond,
                routes,
            )?;
            Ok(x * col::<B>(&get(|p| p.c_skip), dims, &device)
                + f * col::<B>(&get(|p| p.c_out), dims, &device))
        }
        Objective::Flow => net(g, params, x, vec1::<B>(level, &device), cond, routes),
    }
}
