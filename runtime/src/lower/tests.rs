//! The tread.md §1 invariants on the burn lowering, and each op against a naive host reference.

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tread_compiler::compile::{compile_str, CompileOptions, Compiled};
use tread_compiler::config::Init;
use tread_compiler::ir::{Graph, NodeId, Op};
use tread_compiler::params::param_specs;
use tread_compiler::route_spec::parse_flag;

use super::*;
use crate::init::{init_values, normal};
use crate::routing::{RandomRoutes, RouteSource};

type Cpu = Flex;
type Ad = Autodiff<Flex>;

const TINY: &str = include_str!("../../../tests/models/tiny.json");

pub(crate) fn compile(routes: &[&str]) -> Compiled {
    let mut opts = CompileOptions::default();
    for (i, r) in routes.iter().enumerate() {
        opts.routes.push(parse_flag(r, i).unwrap());
    }
    compile_str(TINY, "tiny.json", &opts).unwrap()
}

/// The training recipe of `models/mnist-dit-small.json` (routed, class-conditional, fused
/// engine, the engine's default micro-batches) with batch `batch`, seed 11.
pub(crate) fn small_recipe(batch: usize) -> train::Recipe {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("models/mnist-dit-small.json")).unwrap();
    let c = compile_str(&text, "mnist-dit-small.json", &CompileOptions::default()).unwrap();
    assert!(
        !c.routed.routes.is_empty(),
        "a routed model, so routes are drawn"
    );
    train::Recipe {
        routed: c.routed.clone(),
        dense: tread_compiler::passes::strip_routes(&c.routed).unwrap(),
        training: c.model.training.clone(),
        batch,
        seed: 11,
        classes: Some(10),
        text: None,
        fused: true,
        micro_batches: None,
        init: None,
    }
}

/// The bundled MNIST digits, padded to the models' 32×32.
pub(crate) fn bundled_digits() -> std::sync::Arc<crate::data::Dataset> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let raw = crate::data::idx::load_dir(&root.join("data/mnist")).unwrap();
    std::sync::Arc::new(
        crate::data::fit_to_model(raw, 1, 32, 32, Some(10), 0)
            .unwrap()
            .0,
    )
}

/// The largest absolute difference between two parameter sets.
pub(crate) fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub(crate) fn store<B: Backend>(g: &Graph, seed: u64) -> ParamStore<B> {
    let specs = param_specs(g);
    ParamStore::from_host(
        g,
        &init_values(&specs, Init::Xavier, seed),
        &Default::default(),
    )
    .unwrap()
}

pub(crate) fn inputs<B: Backend>(batch: usize, seed: u64) -> Inputs<B> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = Default::default();
    let img: Vec<f32> = (0..batch * 64).map(|_| normal(&mut rng)).collect();
    let t: Vec<f32> = (0..batch).map(|_| normal(&mut rng)).collect();
    let y: Vec<i64> = (0..batch as i64).map(|i| i % 10).collect();
    Inputs {
        image: Tensor::from_data(TensorData::new(img, [batch, 1, 8, 8]), &d),
        noise_level: Tensor::from_data(TensorData::new(t, [batch]), &d),
        label: Some(Tensor::<B, 1, Int>::from_data(
            TensorData::new(y, [batch]),
            &d,
        )),
        extra: Default::default(),
    }
}

/// Records the indices it hands out.
pub(crate) struct Recording {
    rng: ChaCha8Rng,
    pub drawn: Vec<Vec<i64>>,
}

impl Recording {
    pub(crate) fn new(seed: u64) -> Self {
        Recording {
            rng: ChaCha8Rng::seed_from_u64(seed),
            drawn: vec![],
        }
    }
}

impl RouteSource for Recording {
    fn indices(&mut self, r: usize, b: usize, n: usize, k: usize, s: bool) -> Vec<i64> {
        let v = RandomRoutes { rng: &mut self.rng }.indices(r, b, n, k, s);
        self.drawn.push(v.clone());
        v
    }
}

/// Panics if asked for indices: proves a forward did not route.
struct MustNotRoute;
impl RouteSource for MustNotRoute {
    fn indices(&mut self, r: usize, _: usize, _: usize, _: usize, _: bool) -> Vec<i64> {
        panic!("route {r} drawn in a forward that must be dense")
    }
}

fn host(v: &Value<Cpu>) -> Vec<f32> {
    v.to_vec_f32().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn invariant_1_rate_zero_equals_dense() {
    let dense = compile(&[]).model.graph;
    let routed = compile(&["0:1-2"]).routed;
    assert_eq!(routed.routes[0].keep, 16);
    let p = store::<Cpu>(&dense, 7);
    let x = inputs::<Cpu>(3, 1);
    let a = host(&forward(&dense, &p, &x, &mut MustNotRoute).unwrap());
    let b = host(&forward(&routed, &p, &x, &mut Recording::new(3)).unwrap());
    let d = max_abs_diff(&a, &b);
    assert!(d <= 1e-5, "max |dense − routed(r=0)| = {d}");
}

#[test]
fn invariant_2_routed_positions_are_bit_identical_after_the_merge() {
    let c = compile(&["0.5:1-2"]);
    let g = &c.routed;
    let merge = g.find("route0.merge.blocks.2.out").unwrap();
    let entry = g.find("blocks.0.out").unwrap();
    let p = store::<Cpu>(g, 7);
    let mut rec = Recording::new(5);
    let vals = forward_all(g, &p, &inputs::<Cpu>(2, 1), &mut rec, &[merge, entry]).unwrap();
    let (m, e) = (host(&vals[&merge]), host(&vals[&entry]));
    let idx = &rec.drawn[0];
    let (n, d, keep) = (16, 32, 8);
    for b in 0..2 {
        let kept: Vec<usize> = idx[b * keep..(b + 1) * keep]
            .iter()
            .map(|&i| i as usize)
            .collect();
        for t in 0..n {
            let row = |v: &[f32]| v[(b * n + t) * d..(b * n + t + 1) * d].to_vec();
            if kept.contains(&t) {
                assert_ne!(row(&m), row(&e), "kept token {t} was processed");
            } else {
                let (mr, er) = (row(&m), row(&e));
                assert!(
                    mr.iter().zip(&er).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "routed token {t} changed"
                );
            }
        }
    }
}

#[test]
fn invariant_3_the_dense_graph_never_routes() {
    let c = compile(&["0.5:1-2"]);
    let p = store::<Cpu>(&c.model.graph, 7);
    // MustNotRoute panics on any draw.
    forward(&c.model.graph, &p, &inputs::<Cpu>(2, 1), &mut MustNotRoute).unwrap();
    let stripped = tread_compiler::passes::strip_routes(&c.routed).unwrap();
    forward(&stripped, &p, &inputs::<Cpu>(2, 1), &mut MustNotRoute).unwrap();
}

#[test]
fn invariant_4_fresh_subsets_per_call_and_per_sample() {
    let c = compile(&["0.5:1-2"]);
    let p = store::<Cpu>(&c.routed, 7);
    let x = inputs::<Cpu>(2, 1);
    let mut rec = Recording::new(9);
    let a = host(&forward(&c.routed, &p, &x, &mut rec).unwrap());
    let b = host(&forward(&c.routed, &p, &x, &mut rec).unwrap());
    assert_ne!(rec.drawn[0], rec.drawn[1]);
    assert_ne!(a, b, "a new draw changes the routed output");
    assert_ne!(
        rec.drawn[0][..8],
        rec.drawn[0][8..],
        "two samples, two subsets"
    );
    assert!(
        rec.drawn.iter().all(|d| d.len() == 2 * 8),
        "|kept| = N − floor(N·r) for all"
    );
}

/// Replays fixed indices (for finite differences, where the draw must not change).
struct Fixed(Vec<i64>);
impl RouteSource for Fixed {
    fn indices(&mut self, _: usize, _: usize, _: usize, _: usize, _: bool) -> Vec<i64> {
        self.0.clone()
    }
}

#[test]
fn invariant_5_finite_difference_gradient_through_partition_and_merge() {
    let c = compile(&["0.5:1-2"]);
    let g = &c.routed;
    let idx: Vec<i64> = vec![0, 3, 5, 6, 9, 10, 12, 15, 1, 2, 4, 7, 8, 11, 13, 14];
    let p = store::<Ad>(g, 11);
    let x = inputs::<Ad>(2, 2);
    let weights: Vec<f32> = {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        (0..2 * 64).map(|_| normal(&mut rng)).collect()
    };
    let w = Tensor::<Ad, 4>::from_data(
        TensorData::new(weights.clone(), [2, 1, 8, 8]),
        &Default::default(),
    );
    let loss_of = |img: Tensor<Ad, 4>| {
        let xi = Inputs {
            image: img,
            ..x.clone()
        };
        (forward(g, &p, &xi, &mut Fixed(idx.clone()))
            .unwrap()
            .f4()
            .unwrap()
            * w.clone())
        .sum()
    };
    let img = x.image.clone().require_grad();
    let loss = loss_of(img.clone());
    let grads = loss.backward();
    let analytic = img.grad(&grads).unwrap().to_data().to_vec::<f32>().unwrap();
    let base: Vec<f32> = x.image.to_data().to_vec().unwrap();
    let eps = 1e-2f32;
    for &k in &[0usize, 5, 17, 40, 63, 64, 77, 100, 127] {
        let at = |delta: f32| {
            let mut v = base.clone();
            v[k] += delta;
            let t =
                Tensor::<Ad, 4>::from_data(TensorData::new(v, [2, 1, 8, 8]), &Default::default());
            loss_of(t).into_scalar()
        };
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
        let tol = 2e-2 * numeric.abs().max(analytic[k].abs()) + 2e-3;
        assert!(
            (numeric - analytic[k]).abs() <= tol,
            "pixel {k}: numeric {numeric}, autodiff {}",
            analytic[k]
        );
    }
}

#[test]
fn merge_gradient_is_upstream_at_routed_rows_and_zero_at_kept_rows_of_the_base() {
    let d = Default::default();
    let base = Tensor::<Ad, 3>::from_data(
        TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [1, 4, 3]),
        &d,
    )
    .require_grad();
    let kept =
        Tensor::<Ad, 3>::from_data(TensorData::new(vec![9.0f32; 6], [1, 2, 3]), &d).require_grad();
    let idx = Tensor::<Ad, 2, Int>::from_data(TensorData::new(vec![2i64, 0], [1, 2]), &d);
    let out = super::fused::reference::merge_tokens(base.clone(), kept.clone(), idx);
    let v: Vec<f32> = out.to_data().to_vec().unwrap();
    assert_eq!(v, [9., 9., 9., 3., 4., 5., 9., 9., 9., 9., 10., 11.]);
    let upstream = Tensor::<Ad, 3>::from_data(
        TensorData::new((1..=12).map(|v| v as f32).collect::<Vec<_>>(), [1, 4, 3]),
        &d,
    );
    let grads = (out * upstream).sum().backward();
    let gb: Vec<f32> = base.grad(&grads).unwrap().to_data().to_vec().unwrap();
    let gk: Vec<f32> = kept.grad(&grads).unwrap().to_data().to_vec().unwrap();
    assert_eq!(gb, [0., 0., 0., 4., 5., 6., 0., 0., 0., 10., 11., 12.]);
    assert_eq!(gk, [7., 8., 9., 1., 2., 3.]);
}

fn t3(v: Vec<f32>, s: [usize; 3]) -> Tensor<Cpu, 3> {
    Tensor::from_data(TensorData::new(v, s), &Default::default())
}

fn seq(n: usize, scale: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    (0..n).map(|_| normal(&mut rng) * scale).collect()
}

#[test]
fn layer_norm_and_rms_norm_match_naive() {
    let x = seq(2 * 3 * 8, 2.0);
    let ln: Vec<f32> = super::fused::reference::layer_norm(t3(x.clone(), [2, 3, 8]), 1e-6)
        .to_data()
        .to_vec()
        .unwrap();
    let rms: Vec<f32> = super::fused::reference::rms_norm(t3(x.clone(), [2, 3, 8]), 1e-6)
        .to_data()
        .to_vec()
        .unwrap();
    for r in 0..6 {
        let row = &x[r * 8..(r + 1) * 8];
        let mean = row.iter().sum::<f32>() / 8.0;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 8.0;
        let ms = row.iter().map(|v| v * v).sum::<f32>() / 8.0;
        for c in 0..8 {
            assert!((ln[r * 8 + c] - (row[c] - mean) / (var + 1e-6).sqrt()).abs() < 1e-5);
            assert!((rms[r * 8 + c] - row[c] / (ms + 1e-6).sqrt()).abs() < 1e-5);
        }
    }
}

#[test]
fn patchify_matches_index_math_and_unpatchify_inverts_it() {
    let (b, c, h, w, p) = (2, 3, 4, 6, 2);
    let x: Vec<f32> = (0..b * c * h * w).map(|v| v as f32).collect();
    let t = Tensor::<Cpu, 4>::from_data(
        TensorData::new(x.clone(), [b, c, h, w]),
        &Default::default(),
    );
    let y = ops::patchify(t, p);
    assert_eq!(y.dims(), [b, (h / p) * (w / p), p * p * c]);
    let yv: Vec<f32> = y.clone().to_data().to_vec().unwrap();
    let f = p * p * c;
    for bi in 0..b {
        for gr in 0..h / p {
            for gc in 0..w / p {
                let tok = gr * (w / p) + gc;
                for pr in 0..p {
                    for pc in 0..p {
                        for ch in 0..c {
                            let src = ((bi * c + ch) * h + gr * p + pr) * w + gc * p + pc;
                            let dst = (bi * (h / p) * (w / p) + tok) * f + (pr * p + pc) * c + ch;
                            assert_eq!(yv[dst], x[src]);
                        }
                    }
                }
            }
        }
    }
    let back: Vec<f32> = ops::unpatchify(y, p, h, w).to_data().to_vec().unwrap();
    assert_eq!(back, x);
}

#[test]
fn token_conv_is_causal_depthwise() {
    let (b, n, d, k) = (1, 5, 2, 3);
    let x = seq(b * n * d, 1.0);
    let w = seq(k * d, 1.0);
    let bias = vec![0.5f32, -0.25];
    let dev = Default::default();
    let out: Vec<f32> = ops::token_conv(
        t3(x.clone(), [b, n, d]),
        Tensor::from_data(TensorData::new(w.clone(), [k, d]), &dev),
        Tensor::from_data(TensorData::new(bias.clone(), [d]), &dev),
        k,
        true,
    )
    .to_data()
    .to_vec()
    .unwrap();
    for t in 0..n {
        for c in 0..d {
            let mut want = bias[c];
            for j in 0..k {
                let src = t as isize - (k as isize - 1) + j as isize;
                if src >= 0 {
                    want += w[j * d + c] * x[src as usize * d + c];
                }
            }
            assert!((out[t * d + c] - want).abs() < 1e-5, "t {t} c {c}");
        }
    }
}

/// The whole attention op (qkv, heads, softmax, projection) against a naive host version.
#[test]
fn attention_matches_naive() {
    let g = compile(&[]).model.graph;
    let p = store::<Cpu>(&g, 3);
    let attn = g.find("blocks.0.attn").unwrap();
    let (b, n, d, h) = (2usize, 16usize, 32usize, 2usize);
    let x = seq(b * n * d, 1.0);
    let mut rs = Fixed(vec![]);
    let dev = Default::default();
    // The fused kernel and burn's decomposition, against the same naive loops.
    for fused in [true, false] {
        let mut ctx = ops::OpCtx {
            params: &p,
            routes: &mut rs,
            device: &dev,
            kernels: super::fused::choice::Kernels::from_fused(fused),
            input_types: vec![],
        };
        let op = g.node(attn).op.clone();
        let out = host(
            &ops::eval(
                &op,
                "blocks.0.attn",
                vec![Value::F3(t3(x.clone(), [b, n, d]))],
                &mut ctx,
            )
            .unwrap(),
        );
        let get = |name: &str| p.flat(name).unwrap().to_data().to_vec::<f32>().unwrap();
        let (wqkv, bqkv, wp, bp) = (
            get("blocks.0.attn.qkv.weight"),
            get("blocks.0.attn.qkv.bias"),
            get("blocks.0.attn.proj.weight"),
            get("blocks.0.attn.proj.bias"),
        );
        let hd = d / h;
        for bi in 0..b {
            let tok = |t: usize| &x[(bi * n + t) * d..(bi * n + t + 1) * d];
            let qkv: Vec<Vec<f32>> = (0..n)
                .map(|t| {
                    (0..3 * d)
                        .map(|o| {
                            bqkv[o] + (0..d).map(|i| tok(t)[i] * wqkv[i * 3 * d + o]).sum::<f32>()
                        })
                        .collect()
                })
                .collect();
            let mut heads_out = vec![vec![0f32; d]; n];
            for hh in 0..h {
                for qi in 0..n {
                    let q = &qkv[qi][hh * hd..(hh + 1) * hd];
                    let scores: Vec<f32> = (0..n)
                        .map(|ki| {
                            q.iter()
                                .zip(&qkv[ki][d + hh * hd..d + (hh + 1) * hd])
                                .map(|(a, b)| a * b)
                                .sum::<f32>()
                                / (hd as f32).sqrt()
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f32::MIN, f32::max);
                    let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                    let z: f32 = e.iter().sum();
                    for c in 0..hd {
                        heads_out[qi][hh * hd + c] = (0..n)
                            .map(|ki| e[ki] / z * qkv[ki][2 * d + hh * hd + c])
                            .sum();
                    }
                }
            }
            for t in 0..n {
                for o in 0..d {
                    let want = bp[o] + (0..d).map(|i| heads_out[t][i] * wp[i * d + o]).sum::<f32>();
                    let got = out[(bi * n + t) * d + o];
                    assert!(
                        (got - want).abs() < 1e-4,
                        "fused {fused}, b {bi} t {t} o {o}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn elementwise_ops_match_naive() {
    let g = compile(&[]).model.graph;
    let p = store::<Cpu>(&g, 3);
    let dev = Default::default();
    let mut rs = Fixed(vec![]);
    let mut ctx = ops::OpCtx {
        params: &p,
        routes: &mut rs,
        device: &dev,
        kernels: super::fused::choice::Kernels::Fused,
        input_types: vec![],
    };
    let x = seq(2 * 4 * 3, 2.0);
    let shift = seq(2 * 3, 1.0);
    let scale = seq(2 * 3 + 1, 1.0)[1..].to_vec();
    let xv = || Value::F3(t3(x.clone(), [2, 4, 3]));
    let run = |op: Op, args: Vec<Value<Cpu>>, ctx: &mut ops::OpCtx<Cpu>| {
        host(&ops::eval(&op, "n", args, ctx).unwrap())
    };
    let gelu = run(
        Op::Gelu {
            approximate: tread_compiler::ir::GeluApprox::Tanh,
        },
        vec![xv()],
        &mut ctx,
    );
    let silu = run(Op::Silu, vec![xv()], &mut ctx);
    let modulated = run(
        Op::Modulate,
        vec![
            xv(),
            Value::F3(t3(shift.clone(), [2, 1, 3])),
            Value::F3(t3(scale.clone(), [2, 1, 3])),
        ],
        &mut ctx,
    );
    for (i, &v) in x.iter().enumerate() {
        let g_ref = 0.5
            * v
            * (1.0 + ((2.0f32 / std::f32::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh());
        assert!((gelu[i] - g_ref).abs() < 1e-5);
        assert!((silu[i] - v / (1.0 + (-v).exp())).abs() < 1e-5);
        let (b, c) = (i / 12, i % 3);
        let m_ref = v * (1.0 + scale[b * 3 + c]) + shift[b * 3 + c];
        assert!((modulated[i] - m_ref).abs() < 1e-5);
    }
}

#[test]
fn timestep_and_class_embeddings_match_naive() {
    let g = compile(&[]).model.graph;
    let p = store::<Cpu>(&g, 3);
    let dev: burn::tensor::Device<Cpu> = Default::default();
    let mut rs = Fixed(vec![]);
    let mut ctx = ops::OpCtx {
        params: &p,
        routes: &mut rs,
        device: &dev,
        kernels: super::fused::choice::Kernels::Fused,
        input_types: vec![],
    };
    let t = vec![0.25f32, -1.5];
    let op = g.node(g.find("t_freq").unwrap()).op.clone();
    let emb = host(
        &ops::eval(
            &op,
            "t_freq",
            vec![Value::F1(Tensor::from_data(
                TensorData::new(t.clone(), [2]),
                &dev,
            ))],
            &mut ctx,
        )
        .unwrap(),
    );
    for (b, tv) in t.iter().enumerate() {
        for k in 0..128 {
            let f = (-(10000f64.ln()) * k as f64 / 128.0).exp();
            assert!((emb[b * 256 + k] as f64 - (*tv as f64 * f).cos()).abs() < 1e-5);
            assert!((emb[b * 256 + 128 + k] as f64 - (*tv as f64 * f).sin()).abs() < 1e-5);
        }
    }
    let op = g.node(g.find("y_emb").unwrap()).op.clone();
    let y = Tensor::<Cpu, 1, Int>::from_data(TensorData::new(vec![3i64, 10], [2]), &dev);
    let e = host(&ops::eval(&op, "y_emb", vec![Value::I1(y)], &mut ctx).unwrap());
    let table: Vec<f32> = p.flat("y_emb.table").unwrap().to_data().to_vec().unwrap();
    assert_eq!(&e[..32], &table[3 * 32..4 * 32]);
    assert_eq!(
        &e[32..],
        &table[10 * 32..11 * 32],
        "row 10 is the null label"
    );
}

#[test]
fn gather_expands_batch_one_parameters() {
    let dev = Default::default();
    let table = t3((0..8).map(|v| v as f32).collect(), [1, 4, 2]);
    let idx = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(vec![3i64, 1, 0, 2], [2, 2]), &dev);
    let g = host(&Value::F3(super::fused::reference::gather_tokens(
        table, idx,
    )));
    assert_eq!(g, [6., 7., 2., 3., 0., 1., 4., 5.]);
}

#[test]
fn every_preset_lowers_and_runs_one_routed_forward() {
    // Narrow presets only: the big ones are the same ops at larger sizes.
    for file in ["mnist-dit.json", "uvit-s2.json", "gated-conv-s2.json"] {
        let text =
            std::fs::read_to_string(format!("{}/../models/{file}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let c = compile_str(&text, file, &CompileOptions::default()).unwrap();
        let g = &c.routed;
        let p = store::<Cpu>(g, 1);
        let x_ty = g.ty(g.inputs[0].1);
        let dims: Vec<usize> = x_ty
            .shape
            .iter()
            .map(|d| d.known().unwrap_or(2) as usize)
            .collect();
        let dev = Default::default();
        let n: usize = dims.iter().product();
        let x = Inputs::<Cpu> {
            image: Tensor::from_data(
                TensorData::new(seq(n, 1.0), [dims[0], dims[1], dims[2], dims[3]]),
                &dev,
            ),
            noise_level: Tensor::from_data(TensorData::new(vec![0.1f32, 0.7], [2]), &dev),
            label: Some(Tensor::from_data(TensorData::new(vec![1i64, 2], [2]), &dev)),
            extra: Default::default(),
        };
        let out = forward(g, &p, &x, &mut Recording::new(1)).unwrap();
        assert_eq!(out.shape(), dims, "{file}");
        assert!(host(&out).iter().all(|v| v.is_finite()), "{file}");
    }
}

#[allow(dead_code)]
fn unused(_: NodeId) {}
