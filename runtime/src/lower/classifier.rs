//! The digit classifier behind `treadc eval`: a small LeNet-style CNN on 32×32 one-channel
//! digits in the training range [−1, 1], written with burn's functional conv/pool ops on flat
//! parameter tensors (so its weights are ordinary named host tensors in one safetensors file).
//!
//! Layers: three `conv 3×3 (pad 1) → ReLU → max-pool 2×2` stages (1→16→32→64 channels,
//! 32→16→8→4 pixels), `linear 1024→64 → ReLU` (the 64 *features* the Fréchet distance uses, as
//! FID uses Inception's pool features), `linear 64→10` (the logits). 89,546 parameters.
//!
//! It runs on burn's Flex (CPU) backend only: it is small, and evaluation is a host-side job.

use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::backend::Backend;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::fused::{AdamEmaState, FusedOps};
use super::optim::{AdamState, AdamW};
use super::value::OpResult;

/// Image side the classifier takes (MNIST padded from 28 to 32, as the training data).
pub const SIDE: usize = 32;
/// Length of the feature vector (penultimate layer) the Fréchet distance is computed on.
pub const FEATURES: usize = 64;
/// Number of classes (digits 0–9).
pub const CLASSES: usize = 10;

/// Every parameter: name, shape and fan-in (for the initialisation), in file order.
pub const LAYOUT: [(&str, &[usize], usize); 10] = [
    ("conv1.weight", &[16, 1, 3, 3], 9),
    ("conv1.bias", &[16], 0),
    ("conv2.weight", &[32, 16, 3, 3], 144),
    ("conv2.bias", &[32], 0),
    ("conv3.weight", &[64, 32, 3, 3], 288),
    ("conv3.bias", &[64], 0),
    ("fc1.weight", &[1024, FEATURES], 1024),
    ("fc1.bias", &[FEATURES], 0),
    ("fc2.weight", &[FEATURES, CLASSES], FEATURES),
    ("fc2.bias", &[CLASSES], 0),
];

/// Kaiming-uniform weights (ReLU gain), zero biases, from a seeded stream.
pub fn init(seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    LAYOUT
        .iter()
        .map(|(_, shape, fan_in)| {
            let n: usize = shape.iter().product();
            if *fan_in == 0 {
                return vec![0.0; n];
            }
            let a = (6.0 / *fan_in as f64).sqrt() as f32;
            (0..n).map(|_| rng.random_range(-a..a)).collect()
        })
        .collect()
}

fn stage<B: Backend>(x: Tensor<B, 4>, w: Tensor<B, 4>, b: Tensor<B, 1>) -> Tensor<B, 4> {
    let y = conv2d(x, w, Some(b), ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
    max_pool2d(relu(y), [2, 2], [2, 2], [0, 0], [1, 1], false)
}

/// Features `[N, 64]` and logits `[N, 10]` of images `[N, 1, 32, 32]`.
pub fn forward<B: Backend>(p: &[Tensor<B, 1>], x: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let shaped = |i: usize| -> Tensor<B, 4> {
        let s = LAYOUT[i].1;
        p[i].clone().reshape([s[0], s[1], s[2], s[3]])
    };
    let matrix = |i: usize| -> Tensor<B, 2> {
        let s = LAYOUT[i].1;
        p[i].clone().reshape([s[0], s[1]])
    };
    let n = x.dims()[0];
    let h = stage(x, shaped(0), p[1].clone());
    let h = stage(h, shaped(2), p[3].clone());
    let h = stage(h, shaped(4), p[5].clone());
    let h = h.reshape([n, 1024]);
    let features = relu(h.matmul(matrix(6)) + p[7].clone().unsqueeze_dim(0));
    let logits = features.clone().matmul(matrix(8)) + p[9].clone().unsqueeze_dim(0);
    (features, logits)
}

fn to_device<B: Backend>(values: &[Vec<f32>], dev: &B::Device) -> Vec<Tensor<B, 1>> {
    values
        .iter()
        .map(|v| Tensor::from_data(TensorData::new(v.clone(), [v.len()]), dev))
        .collect()
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> OpResult<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| format!("cannot read tensor data: {e:?}"))
}

/// Features (`n × 64`) and logits (`n × 10`) of `n` images (`n × 32 × 32`, values clamped to
/// [−1, 1] first, as samples can overshoot), in batches of 500.
pub fn embed(params: &[Vec<f32>], images: &[f32], n: usize) -> OpResult<(Vec<f32>, Vec<f32>)> {
    let len = SIDE * SIDE;
    if images.len() != n * len {
        return Err(format!(
            "classifier: {} values for {n} images of {SIDE}×{SIDE}",
            images.len()
        ));
    }
    let dev = Default::default();
    let p = to_device::<Flex>(params, &dev);
    let (mut features, mut logits) = (Vec::new(), Vec::new());
    for start in (0..n).step_by(500) {
        let m = (n - start).min(500);
        let chunk: Vec<f32> = images[start * len..(start + m) * len]
            .iter()
            .map(|v| v.clamp(-1.0, 1.0))
            .collect();
        let x = Tensor::<Flex, 4>::from_data(TensorData::new(chunk, [m, 1, SIDE, SIDE]), &dev);
        let (f, l) = forward(&p, x);
        features.extend(host(f)?);
        logits.extend(host(l)?);
    }
    Ok((features, logits))
}

/// How [`train`] trains.
#[derive(Debug, Clone, Copy)]
pub struct TrainPlan {
    /// Optimiser steps.
    pub steps: usize,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate (constant for the first half, then linearly down to 10%).
    pub lr: f64,
    /// Seed of the initialisation, batch order and shifts.
    pub seed: u64,
    /// Largest random translation, in pixels, applied to each training image.
    pub max_shift: i64,
}

/// Translates one 32×32 image by `(dy, dx)` pixels, filling with the background −1.
fn shifted(img: &[f32], dy: i64, dx: i64) -> impl Iterator<Item = f32> + '_ {
    let s = SIDE as i64;
    (0..s * s).map(move |i| {
        let (y, x) = (i / s - dy, i % s - dx);
        if (0..s).contains(&y) && (0..s).contains(&x) {
            img[(y * s + x) as usize]
        } else {
            -1.0
        }
    })
}

/// Trains the classifier with cross-entropy and Adam on `images` (`n × 32 × 32`) and `labels`
/// (0–9); `progress` sees each step's loss. Returns the parameters in [`LAYOUT`] order.
pub fn train(
    images: &[f32],
    labels: &[i64],
    plan: TrainPlan,
    mut progress: impl FnMut(usize, f32),
) -> OpResult<Vec<Vec<f32>>> {
    type Ad = Autodiff<Flex>;
    let len = SIDE * SIDE;
    let n = labels.len();
    if images.len() != n * len || n == 0 {
        return Err(format!(
            "classifier: {} values for {n} labelled images",
            images.len()
        ));
    }
    let dev = Default::default();
    let mut params = to_device::<Flex>(&init(plan.seed), &dev);
    let mut adam = AdamState::zeros(&params);
    let mut ema: Vec<Tensor<Flex, 1>> = params.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed ^ 0x5eed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut cursor = n;
    for step in 0..plan.steps {
        let mut x = Vec::with_capacity(plan.batch * len);
        let mut onehot = vec![0.0f32; plan.batch * CLASSES];
        for j in 0..plan.batch {
            if cursor == n {
                for i in (1..n).rev() {
                    order.swap(i, rng.random_range(0..=i));
                }
                cursor = 0;
            }
            let i = order[cursor];
            cursor += 1;
            let (dy, dx) = (
                rng.random_range(-plan.max_shift..=plan.max_shift),
                rng.random_range(-plan.max_shift..=plan.max_shift),
            );
            x.extend(shifted(&images[i * len..(i + 1) * len], dy, dx));
            onehot[j * CLASSES + labels[i] as usize] = 1.0;
        }
        let ad: Vec<Tensor<Ad, 1>> = params
            .iter()
            .map(|p| Tensor::from_inner(p.clone()).require_grad())
            .collect();
        let xb = Tensor::<Ad, 4>::from_data(TensorData::new(x, [plan.batch, 1, SIDE, SIDE]), &dev);
        let yb = Tensor::<Ad, 2>::from_data(TensorData::new(onehot, [plan.batch, CLASSES]), &dev);
        let (_, logits) = forward(&ad, xb);
        let loss = (log_softmax(logits, 1) * yb).sum().neg() / plan.batch as f64;
        let value: f32 = host(loss.clone().inner())?
            .first()
            .copied()
            .unwrap_or(f32::NAN);
        if !value.is_finite() {
            return Err(format!("classifier training diverged at step {step}"));
        }
        let grads = loss.backward();
        let g: Vec<Option<Tensor<Flex, 1>>> = ad.iter().map(|p| p.grad(&grads)).collect();
        drop((grads, ad));
        let frac = step as f64 / plan.steps as f64;
        let lr = plan.lr
            * if frac < 0.5 {
                1.0
            } else {
                1.0 - 1.8 * (frac - 0.5)
            };
        let h = AdamW {
            lr,
            ..AdamW::default()
        }
        .with_step(step as u64 + 1, 0.0);
        let state = AdamEmaState {
            m: &mut adam.m,
            v: &mut adam.v,
            ema: &mut ema,
        };
        Flex::fused_adamw_ema(&mut params, g, state, h);
        progress(step, value);
    }
    params.into_iter().map(host).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_counts_the_documented_parameters() {
        let total: usize = LAYOUT
            .iter()
            .map(|(_, s, _)| s.iter().product::<usize>())
            .sum();
        assert_eq!(total, 89_546);
        assert_eq!(init(0).len(), LAYOUT.len());
    }

    #[test]
    fn shift_moves_pixels_and_fills_background() {
        let mut img = vec![-1.0f32; SIDE * SIDE];
        img[5 * SIDE + 7] = 1.0;
        let out: Vec<f32> = shifted(&img, 2, -3).collect();
        assert_eq!(out[7 * SIDE + 4], 1.0);
        assert_eq!(out.iter().filter(|v| **v == 1.0).count(), 1);
    }

    #[test]
    fn embed_shapes_and_a_few_steps_lower_the_loss() {
        // Two synthetic classes: a bright top half or a bright bottom half.
        let n = 64;
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let top = i % 2 == 0;
            images.extend((0..SIDE * SIDE).map(|p| {
                if (p < SIDE * SIDE / 2) == top {
                    1.0
                } else {
                    -1.0
                }
            }));
            labels.push((i % 2) as i64);
        }
        let mut losses = Vec::new();
        let plan = TrainPlan {
            steps: 30,
            batch: 16,
            lr: 2e-3,
            seed: 1,
            max_shift: 0,
        };
        let p = train(&images, &labels, plan, |_, l| losses.push(l)).unwrap();
        assert!(losses[29] < 0.2 * losses[0], "{losses:?}");
        let (f, l) = embed(&p, &images, n).unwrap();
        assert_eq!((f.len(), l.len()), (n * FEATURES, n * CLASSES));
        let argmax = |row: &[f32]| {
            (0..CLASSES)
                .max_by(|a, b| row[*a].total_cmp(&row[*b]))
                .unwrap_or(0)
        };
        for i in 0..n {
            assert_eq!(argmax(&l[i * CLASSES..(i + 1) * CLASSES]), i % 2);
        }
    }
}
