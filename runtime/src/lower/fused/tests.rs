//! The fused ops against their decompositions (forward on `Flex`, gradients on
//! `Autodiff<Flex>`), on random shapes including routed token counts and batch 1, plus a
//! finite-difference check of each backward.

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use proptest::prelude::*;

use super::choice::Kernels;
use super::{reference, FusedOps, NormKind};

type Ad = Autodiff<Flex>;

fn rand2<B: Backend>(rows: usize, cols: usize, seed: u64) -> Tensor<B, 2> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [rows, cols]), &Default::default())
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec().unwrap()
}

/// max |a − b| / max(max |b|, 1e-3).
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

const TOL: f32 = 1e-5;

type OpFn<B> = Box<dyn Fn(Vec<Tensor<B, 2>>) -> Tensor<B, 2>>;

/// One op under test: its inputs' shapes, and the op fused (autodiff and flex) and decomposed.
struct Case {
    name: String,
    shapes: Vec<[usize; 2]>,
    fused: OpFn<Ad>,
    reference: OpFn<Ad>,
    fused_flex: OpFn<Flex>,
}

/// Forward (flex and autodiff) and every input's gradient of `Σ out ⊙ w`, fused vs reference.
fn check(case: &Case, seed: u64) {
    let make = || -> Vec<Tensor<Ad, 2>> {
        case.shapes
            .iter()
            .enumerate()
            .map(|(i, &[r, c])| rand2::<Ad>(r, c, seed * 31 + i as u64).require_grad())
            .collect()
    };
    let (xa, xb) = (make(), make());
    let flex_in: Vec<Tensor<Flex, 2>> = xa.iter().map(|t| t.clone().inner()).collect();
    let (ya, yb) = ((case.fused)(xa.clone()), (case.reference)(xb.clone()));
    let [r, c] = ya.dims();
    let w = rand2::<Ad>(r, c, seed + 1000);
    let yf = (case.fused_flex)(flex_in);
    let name = &case.name;
    assert!(
        rel_err(&host(yf), &host(yb.clone())) < TOL,
        "{name}: flex forward"
    );
    assert!(
        rel_err(&host(ya.clone()), &host(yb.clone())) < TOL,
        "{name}: autodiff forward"
    );
    let (ga, gb) = ((ya * w.clone()).sum().backward(), (yb * w).sum().backward());
    for (i, (a, b)) in xa.iter().zip(&xb).enumerate() {
        let (da, db) = (a.grad(&ga).unwrap(), b.grad(&gb).unwrap());
        let e = rel_err(&host(da), &host(db));
        assert!(e < TOL, "{name}: gradient of input {i}: relative error {e}");
    }
}

fn attention_case(batch: usize, tokens: usize, heads: usize, dh: usize) -> Case {
    Case {
        name: format!("attention b{batch} n{tokens} h{heads} dh{dh}"),
        shapes: vec![[batch * tokens, 3 * heads * dh]],
        fused: Box::new(move |x| <Ad as FusedOps>::fused_attention(x[0].clone(), batch, heads)),
        reference: Box::new(move |x| reference::attention(x[0].clone(), batch, heads)),
        fused_flex: Box::new(move |x| {
            <Flex as FusedOps>::fused_attention(x[0].clone(), batch, heads)
        }),
    }
}

fn norm_case(batch: usize, tokens: usize, d: usize, modulate: bool, rms: bool) -> Case {
    let mut shapes = vec![[batch * tokens, d]];
    if modulate {
        shapes.extend([[batch, d], [batch, d]]);
    }
    let kind = if rms { NormKind::Rms } else { NormKind::Layer };
    let b = if modulate { batch } else { 1 };
    macro_rules! op {
        ($f:expr) => {
            Box::new(move |x| {
                let mods = (x.len() == 3).then(|| (x[1].clone(), x[2].clone()));
                $f(x[0].clone(), mods, b, kind, 1e-6)
            })
        };
    }
    Case {
        name: format!("{kind:?} norm {}x{d}, modulate {modulate}", batch * tokens),
        shapes,
        fused: op!(<Ad as FusedOps>::fused_norm),
        reference: op!(reference::norm::<Ad>),
        fused_flex: op!(<Flex as FusedOps>::fused_norm),
    }
}

fn gelu_case(rows: usize, d: usize) -> Case {
    Case {
        name: format!("gelu {rows}x{d}"),
        shapes: vec![[rows, d]],
        fused: Box::new(|x| <Ad as FusedOps>::fused_gelu_tanh(x[0].clone() * 3.0)),
        reference: Box::new(|x| reference::gelu_tanh(x[0].clone() * 3.0)),
        fused_flex: Box::new(|x| <Flex as FusedOps>::fused_gelu_tanh(x[0].clone() * 3.0)),
    }
}

fn gated_case(batch: usize, tokens: usize, d: usize) -> Case {
    macro_rules! op {
        ($f:expr) => {
            Box::new(move |x| $f(x[0].clone(), x[1].clone(), x[2].clone(), batch))
        };
    }
    Case {
        name: format!("gated residual b{batch} n{tokens} d{d}"),
        shapes: vec![[batch * tokens, d], [batch, d], [batch * tokens, d]],
        fused: op!(<Ad as FusedOps>::fused_gated_residual),
        reference: op!(reference::gated_residual::<Ad>),
        fused_flex: op!(<Flex as FusedOps>::fused_gated_residual),
    }
}

/// A linear layer `[rows, inputs] · [inputs, outputs] (+ bias)`; the bias is a `[1, outputs]`
/// input reshaped to the op's `[outputs]`, so its gradient is checked like the others.
fn linear_case(rows: usize, inputs: usize, outputs: usize, bias: bool) -> Case {
    let mut shapes = vec![[rows, inputs], [inputs, outputs]];
    if bias {
        shapes.push([1, outputs]);
    }
    macro_rules! op {
        ($f:expr) => {
            Box::new(move |x| {
                let b = x.get(2).map(|b| b.clone().reshape([outputs]));
                $f(x[0].clone(), x[1].clone(), b)
            })
        };
    }
    Case {
        name: format!("linear {rows}x{inputs} -> {outputs}, bias {bias}"),
        shapes,
        fused: op!(<Ad as FusedOps>::fused_linear),
        reference: op!(burn::tensor::module::linear::<Ad, 2>),
        fused_flex: op!(<Flex as FusedOps>::fused_linear),
    }
}

#[test]
fn dit_shapes_match_the_decomposition() {
    // The block's linears at MNIST-DiT's width (qkv, fc1 at 64 and 32 tokens), the adaLN
    // linear on one row per sample, and a linear without bias.
    check(&linear_case(3 * 64, 128, 384, true), 11);
    check(&linear_case(32, 128, 512, true), 12);
    check(&linear_case(3, 128, 768, true), 13);
    check(&linear_case(70, 40, 9, false), 14);
    // MNIST-DiT (64 tokens, width 128, 4 heads), its routed span (32 kept), batch 1.
    check(&attention_case(3, 64, 4, 32), 1);
    check(&attention_case(1, 32, 4, 32), 2);
    check(&norm_case(3, 64, 128, true, false), 3);
    check(&norm_case(2, 32, 128, false, false), 4);
    check(&norm_case(2, 7, 33, true, true), 5);
    check(&gelu_case(70, 40), 6);
    check(&gated_case(3, 64, 128), 7);
    check(&gated_case(1, 1, 5), 8);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_shapes_match_the_decomposition(
        batch in 1usize..4, tokens in 1usize..40, heads in 1usize..4, dh in 1usize..20,
        modulate in any::<bool>(), rms in any::<bool>(), seed in 0u64..1000,
    ) {
        check(&attention_case(batch, tokens, heads, dh), seed);
        // Width ≥ 3: a layer norm over 2 values outputs ±1 whatever they are, so its gradient
        // is zero and the comparison would be one of rounding noise (found by this test).
        check(&norm_case(batch, tokens, heads * dh + 2, modulate, rms), seed);
        check(&gelu_case(batch * tokens, heads * dh), seed);
        check(&gated_case(batch, tokens, heads * dh), seed);
        check(&linear_case(batch * tokens, heads * dh, dh + 1, modulate), seed);
    }
}

/// Central finite differences (in f64 over the f32 flex forward, h = 1e-2) of `Σ out ⊙ w`
/// against each fused backward, on a few coordinates of every input.
#[test]
fn backwards_match_finite_differences() {
    for (case, seed) in [
        (attention_case(2, 5, 2, 3), 1),
        (norm_case(2, 4, 6, true, false), 2),
        (norm_case(2, 4, 7, true, true), 3),
        (norm_case(1, 4, 6, false, false), 4),
        (gelu_case(3, 5), 5),
        (gated_case(2, 3, 4), 6),
        (linear_case(4, 3, 5, true), 7),
        (linear_case(3, 4, 2, false), 8),
    ] {
        let xs: Vec<Tensor<Ad, 2>> = case
            .shapes
            .iter()
            .enumerate()
            .map(|(i, &[r, c])| rand2::<Ad>(r, c, seed * 7 + i as u64).require_grad())
            .collect();
        let y = (case.fused)(xs.clone());
        let [r, c] = y.dims();
        let w = rand2::<Ad>(r, c, 99);
        let grads = (y * w.clone()).sum().backward();
        let wv = host(w.inner());
        let loss = |inputs: Vec<Tensor<Flex, 2>>| -> f64 {
            let out = host((case.fused_flex)(inputs));
            out.iter()
                .zip(&wv)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum()
        };
        let base: Vec<Vec<f32>> = xs.iter().map(|t| host(t.clone().inner())).collect();
        let h = 1e-2f32;
        for (i, x) in xs.iter().enumerate() {
            let g = host(x.grad(&grads).unwrap());
            let [rows, cols] = case.shapes[i];
            for k in (0..rows * cols).step_by(3) {
                let with = |delta: f32| -> Vec<Tensor<Flex, 2>> {
                    base.iter()
                        .enumerate()
                        .map(|(j, v)| {
                            let mut v = v.clone();
                            if j == i {
                                v[k] += delta;
                            }
                            let [r, c] = case.shapes[j];
                            Tensor::from_data(TensorData::new(v, [r, c]), &Default::default())
                        })
                        .collect()
                };
                let fd = (loss(with(h)) - loss(with(-h))) / (2.0 * h as f64);
                assert!(
                    (g[k] as f64 - fd).abs() < 2e-3 * (1.0 + fd.abs()),
                    "case {seed}, input {i}, element {k}: backward {} vs finite difference {fd}",
                    g[k]
                );
            }
        }
    }
}

#[test]
fn untracked_inputs_run_without_keeping_state() {
    let x = rand2::<Ad>(8, 12, 1);
    let y = <Ad as FusedOps>::fused_attention(x.clone(), 2, 2);
    let r = reference::attention(x, 2, 2);
    assert!(rel_err(&host(y), &host(r)) < TOL);
}

/// 30 MNIST-DiT training steps (routed, as the README's run) with the fused engine and with the
/// decompositions, from the same seed: the losses agree at every step.
#[test]
fn slow_thirty_mnist_steps_fused_and_unfused_agree() {
    use crate::data::{fit_to_model, idx};
    use crate::lower::train::{Recipe, Trainer};
    use tread_compiler::compile::{compile_str, CompileOptions};
    use tread_compiler::passes::strip_routes;

    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("models/mnist-dit.json")).unwrap();
    let compiled = compile_str(&text, "mnist-dit.json", &CompileOptions::default()).unwrap();
    assert!(!compiled.model.graph.routes.is_empty() || !compiled.routed.routes.is_empty());
    let raw = idx::load_dir(&root.join("data/mnist")).unwrap();
    let (data, _) = fit_to_model(raw, 1, 32, 32, Some(10), 0).unwrap();
    let trainer = |fused: bool| {
        let r = Recipe {
            routed: compiled.routed.clone(),
            dense: strip_routes(&compiled.routed).unwrap(),
            training: compiled.model.training.clone(),
            batch: 8,
            seed: 5,
            classes: Some(10),
            text: None,
            fused,
            micro_batches: None,
            init: None,
        };
        Trainer::<Flex>::new(r, Default::default()).unwrap()
    };
    let (mut a, mut b) = (trainer(true), trainer(false));
    for step in 0..30 {
        let (la, lb) = (a.train_step(&data).unwrap(), b.train_step(&data).unwrap());
        assert!(
            (la - lb).abs() <= 1e-3 * lb.abs().max(1.0),
            "step {step}: fused loss {la}, unfused {lb}"
        );
    }
}

/// Distinct kept indices per sample, in a shuffled order.
fn kept_indices(batch: usize, tokens: usize, kept: usize, seed: u64) -> Vec<i64> {
    let mut x = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    let mut out = vec![];
    for _ in 0..batch {
        let mut all: Vec<i64> = (0..tokens as i64).collect();
        for i in (1..tokens).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            all.swap(i, (x % (i as u64 + 1)) as usize);
        }
        out.extend_from_slice(&all[..kept]);
    }
    out
}

/// Partition and merge, fused vs decomposition: forward values and the gradients of the full
/// value, the processed kept tokens, on random sizes.
fn check_tokens(batch: usize, tokens: usize, kept: usize, d: usize, seed: u64) {
    use burn::tensor::Int;
    let idx_v = kept_indices(batch, tokens, kept, seed);
    let idx = || {
        Tensor::<Ad, 2, Int>::from_data(
            TensorData::new(idx_v.clone(), [batch, kept]),
            &Default::default(),
        )
    };
    let x3 = |r, c, s| rand2::<Ad>(r, c, s).reshape([batch, r / batch, c]);
    let run = |fused: bool| {
        let x = x3(batch * tokens, d, seed).require_grad();
        let k = x3(batch * kept, d, seed + 1).require_grad();
        let (g, m) = if fused {
            let g = <Ad as FusedOps>::fused_gather_tokens(x.clone(), idx());
            (
                g.clone(),
                <Ad as FusedOps>::fused_merge_tokens(x.clone(), k.clone() * g, idx()),
            )
        } else {
            let g = crate::lower::fused::reference::gather_tokens(x.clone(), idx());
            (
                g.clone(),
                crate::lower::fused::reference::merge_tokens(x.clone(), k.clone() * g, idx()),
            )
        };
        let w = x3(batch * tokens, d, seed + 2);
        let grads = (m.clone() * w).sum().backward();
        (
            host(g),
            host(m),
            host(x.grad(&grads).unwrap()),
            host(k.grad(&grads).unwrap()),
        )
    };
    let (a, b) = (run(true), run(false));
    assert!(rel_err(&a.0, &b.0) < TOL, "gather forward");
    assert!(rel_err(&a.1, &b.1) < TOL, "merge forward");
    assert!(rel_err(&a.2, &b.2) < TOL, "gradient of the full value");
    assert!(rel_err(&a.3, &b.3) < TOL, "gradient of the kept tokens");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn partition_and_merge_match_the_decomposition(
        batch in 1usize..4, tokens in 1usize..40, keep_frac in 0.0f64..1.0, d in 1usize..20,
        seed in 0u64..1000,
    ) {
        let kept = ((tokens as f64 * keep_frac) as usize).max(1);
        check_tokens(batch, tokens, kept, d, seed);
    }
}

/// Unmasked `sdpa` through the fused kernel (q, k, v packed) equals burn's decomposition,
/// forward and gradients, at joint-attention token counts (8 text + 64 or 32 image tokens) and
/// batch 1.
#[test]
fn sdpa_through_the_fused_kernel_equals_the_decomposition() {
    use crate::lower::ops::{sdpa, sdpa_self};
    for (b, n, heads, dh) in [(2, 72, 4, 16), (1, 40, 2, 8), (3, 5, 1, 4)] {
        let d = heads * dh;
        let make = |seed: u64| -> Vec<Tensor<Ad, 3>> {
            (0..3)
                .map(|i| {
                    rand2::<Ad>(b * n, d, seed * 7 + i)
                        .reshape([b, n, d])
                        .require_grad()
                })
                .collect()
        };
        let (xa, xb) = (make(1), make(1));
        let ya = sdpa_self(
            xa[0].clone(),
            xa[1].clone(),
            xa[2].clone(),
            heads,
            Kernels::Fused,
        );
        let yb = sdpa(xb[0].clone(), xb[1].clone(), xb[2].clone(), None, heads);
        let name = format!("sdpa b {b} n {n} heads {heads}");
        assert!(
            rel_err(&host(ya.clone()), &host(yb.clone())) < TOL,
            "{name}: forward"
        );
        let w = rand2::<Ad>(b * n, d, 99).reshape([b, n, d]);
        let (ga, gb) = ((ya * w.clone()).sum().backward(), (yb * w).sum().backward());
        for (i, (a, c)) in xa.iter().zip(&xb).enumerate() {
            let e = rel_err(&host(a.grad(&ga).unwrap()), &host(c.grad(&gb).unwrap()));
            assert!(e < TOL, "{name}: gradient of input {i}: relative error {e}");
        }
    }
}

/// RoPE through the fused kernel equals the burn decomposition, forward (flex and autodiff) and
/// the input's gradient, with shared and per-sample angle tables, routed token counts and batch 1.
#[test]
fn rope_through_the_fused_kernel_equals_the_decomposition() {
    for (b, n, heads, half, table_batch) in [(2, 72, 4, 8, 1), (3, 40, 2, 4, 3), (1, 5, 1, 2, 1)] {
        let d = heads * 2 * half;
        let tables = |seed: u64| {
            let angles =
                rand2::<Ad>(table_batch * n, half, seed).reshape([table_batch, n, half]) * 3.0;
            (angles.clone().cos(), angles.sin())
        };
        let (cos, sin) = tables(5);
        let x = |seed: u64| {
            rand2::<Ad>(b * n, d, seed)
                .reshape([b, n, d])
                .require_grad()
        };
        let (xa, xb) = (x(1), x(1));
        let ya = <Ad as FusedOps>::fused_rope(xa.clone(), cos.clone(), sin.clone(), heads);
        let yb = reference::rope(xb.clone(), cos.clone(), sin.clone(), heads);
        let yf = <Flex as FusedOps>::fused_rope(
            xa.clone().inner(),
            cos.clone().inner(),
            sin.clone().inner(),
            heads,
        );
        let name = format!("rope b {b} n {n} heads {heads} tables {table_batch}");
        assert!(
            rel_err(&host(yf), &host(yb.clone())) < TOL,
            "{name}: flex forward"
        );
        assert!(
            rel_err(&host(ya.clone()), &host(yb.clone())) < TOL,
            "{name}: autodiff forward"
        );
        let w = rand2::<Ad>(b * n, d, 99).reshape([b, n, d]);
        let (ga, gb) = ((ya * w.clone()).sum().backward(), (yb * w).sum().backward());
        let e = rel_err(&host(xa.grad(&ga).unwrap()), &host(xb.grad(&gb).unwrap()));
        assert!(e < TOL, "{name}: gradient: relative error {e}");
    }
}

/// Cross-attention and masked attention through the fused kernel equal burn's decomposition
/// (`sdpa`), forward (autodiff and flex) and the gradients of q, k and v: queries on fewer or
/// more keys, a padding mask per sample, one mask shared by the batch, a sample whose keys are
/// all masked (the null text of guidance), routed query counts and batch 1.
#[test]
fn cross_attention_through_the_fused_kernel_equals_the_decomposition() {
    use crate::lower::ops::{sdpa, sdpa_cross};
    // (batch, queries, keys, heads, head width, mask: none / per sample / shared)
    for (b, n, m, heads, dh, mask) in [
        (2, 64, 8, 4, 16, 1),
        (3, 37, 8, 2, 8, 1),
        (1, 5, 12, 1, 4, 2),
        (2, 9, 9, 2, 4, 0),
        (2, 16, 3, 4, 4, 2),
    ] {
        let d = heads * dh;
        let make = |seed: u64| -> Vec<Tensor<Ad, 3>> {
            [(n, 0u64), (m, 1), (m, 2)]
                .into_iter()
                .map(|(t, i)| {
                    rand2::<Ad>(b * t, d, seed * 7 + i)
                        .reshape([b, t, d])
                        .require_grad()
                })
                .collect()
        };
        let (xa, xb) = (make(1), make(1));
        // Sample 0 keeps its first m − 2 keys, sample 1 none (all masked), later ones all.
        let rows = if mask == 2 { 1 } else { b };
        let keep: Vec<f32> = (0..rows * m)
            .map(|i| match (i / m, i % m) {
                (0, j) if j + 2 >= m => 0.0,
                (1, _) => 0.0,
                _ => 1.0,
            })
            .collect();
        let mask_of = || {
            (mask > 0).then(|| {
                Tensor::<Ad, 2>::from_data(
                    TensorData::new(keep.clone(), [rows, m]),
                    &Default::default(),
                )
            })
        };
        let ya = sdpa_cross(
            xa[0].clone(),
            xa[1].clone(),
            xa[2].clone(),
            mask_of(),
            heads,
            Kernels::Fused,
        );
        let yb = sdpa(
            xb[0].clone(),
            xb[1].clone(),
            xb[2].clone(),
            mask_of(),
            heads,
        );
        let yf = sdpa_cross::<Flex>(
            xa[0].clone().inner(),
            xa[1].clone().inner(),
            xa[2].clone().inner(),
            mask_of().map(|t| t.inner()),
            heads,
            Kernels::Fused,
        );
        let name = format!("cross b {b} n {n} m {m} heads {heads} mask {mask}");
        assert!(
            rel_err(&host(yf), &host(yb.clone())) < TOL,
            "{name}: flex forward"
        );
        assert!(
            rel_err(&host(ya.clone()), &host(yb.clone())) < TOL,
            "{name}: autodiff forward"
        );
        let w = rand2::<Ad>(b * n, d, 99).reshape([b, n, d]);
        let (ga, gb) = ((ya * w.clone()).sum().backward(), (yb * w).sum().backward());
        for (i, (a, c)) in xa.iter().zip(&xb).enumerate() {
            let e = rel_err(&host(a.grad(&ga).unwrap()), &host(c.grad(&gb).unwrap()));
            assert!(e < TOL, "{name}: gradient of input {i}: relative error {e}");
        }
    }
}
