//! The joined-stream constructs (text + image trunk, RoPE, QK-norm, sdpa) lowered to burn: a
//! route keeps each kept token's position and passes text tokens whole, rate 0 equals dense,
//! and the burn forward equals the exported ONNX file on tract.

use std::collections::HashMap;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tread_compiler::compile::{compile_str, CompileOptions, Compiled};
use tread_compiler::config::Init;
use tread_compiler::ir::{Graph, InputRole, Op};
use tread_compiler::params::param_specs;
use tread_compiler::route_spec::parse_flag;
use tread_onnx::export::file::{write_model, ExternalData};
use tread_onnx::export::{export, ExportOptions, Weights};
use tread_onnx::tract::{HostValue, TractModel};

use super::*;
use crate::init::{init_values, normal};
use crate::routing::RouteSource;

type Cpu = Flex;

const BATCH: usize = 2;

fn flux_small(routes: &[&str]) -> Compiled {
    small("mnist-flux-small.json", routes)
}

fn small(file: &str, routes: &[&str]) -> Compiled {
    let text = std::fs::read_to_string(format!("{}/../models/{file}", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    let mut opts = CompileOptions::default();
    for (i, r) in routes.iter().enumerate() {
        opts.routes.push(parse_flag(r, i).unwrap());
    }
    if routes.is_empty() {
        opts.dense = true;
    }
    compile_str(&text, file, &opts).unwrap()
}

/// Host values for each graph input, in input order: normal draws, and a text mask that pads
/// the last two text tokens of the second sample.
fn host_inputs(g: &Graph, seed: u64) -> Vec<(InputRole, Vec<f32>, Vec<usize>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    g.inputs
        .iter()
        .map(|&(_, id)| {
            let Op::Input { role } = g.node(id).op else {
                unreachable!("graph inputs are input nodes")
            };
            let shape: Vec<usize> = g
                .ty(id)
                .shape
                .iter()
                .map(|d| d.known().map_or(BATCH, |k| k as usize))
                .collect();
            let n: usize = shape.iter().product();
            let v = match role {
                InputRole::ContextMask => {
                    let l = shape[1];
                    (0..n)
                        .map(|i| if i >= n - 2 && i / l == 1 { 0.0 } else { 1.0 })
                        .collect()
                }
                _ => (0..n).map(|_| normal(&mut rng)).collect(),
            };
            (role, v, shape)
        })
        .collect()
}

fn inputs(host: &[(InputRole, Vec<f32>, Vec<usize>)]) -> Inputs<Cpu> {
    let d = Default::default();
    let find = |r: InputRole| host.iter().find(|h| h.0 == r);
    let t = |r: InputRole| find(r).map(|h| TensorData::new(h.1.clone(), h.2.clone()));
    let image = t(InputRole::Image).unwrap();
    let video = (image.shape.len() == 5).then(|| Tensor::from_data(image.clone(), &d));
    Inputs {
        image: match video {
            Some(_) => Tensor::zeros([1, 1, 1, 1], &d),
            None => Tensor::from_data(image, &d),
        },
        noise_level: Tensor::from_data(t(InputRole::NoiseLevel).unwrap(), &d),
        label: None,
        extra: ExtraInputs {
            video,
            context: t(InputRole::Context).map(|x| Tensor::from_data(x, &d)),
            context_mask: t(InputRole::ContextMask).map(|x| Tensor::from_data(x, &d)),
            pooled: t(InputRole::Pooled).map(|x| Tensor::from_data(x, &d)),
            ..Default::default()
        },
    }
}

fn weights(g: &Graph) -> Vec<Vec<f32>> {
    init_values(&param_specs(g), Init::Xavier, 5)
}

fn host(v: &Value<Cpu>) -> Vec<f32> {
    v.to_vec_f32().unwrap()
}

/// Replays fixed indices.
struct Fixed(Vec<i64>);
impl RouteSource for Fixed {
    fn indices(&mut self, _: usize, _: usize, _: usize, _: usize, _: bool) -> Vec<i64> {
        self.0.clone()
    }
}

/// Rows `[b, n, ..]` of a row-major `[B, N, F]` buffer.
fn row(v: &[f32], n_tokens: usize, b: usize, n: usize) -> &[f32] {
    let f = v.len() / (BATCH * n_tokens);
    &v[(b * n_tokens + n) * f..(b * n_tokens + n + 1) * f]
}

#[test]
fn kept_tokens_rotate_with_their_own_positions_and_text_passes_whole() {
    let dense = flux_small(&[]);
    let routed = flux_small(&["0.5:2-2"]);
    let (gd, gr) = (&dense.routed, &routed.routed);
    let w = weights(gd);
    let pd = ParamStore::<Cpu>::from_host(gd, &w, &Default::default()).unwrap();
    let pr = ParamStore::<Cpu>::from_host(gr, &w, &Default::default()).unwrap();
    let x = inputs(&host_inputs(gd, 1));
    // Kept image tokens per sample (of 64), deliberately out of order.
    let idx: Vec<i64> = (0..BATCH as i64)
        .flat_map(|b| (0..32).map(move |j| (j * 7 + 3 * b + 5) % 64))
        .collect();
    let (rq_d, rq_r) = (
        gd.find("blocks.2.rq").unwrap(),
        gr.find("blocks.2.rq").unwrap(),
    );
    let entry = gr.find("blocks.1.out").unwrap();
    let gathered = gr.find("route0.gather.blocks.1.out").unwrap();
    let merged = gr.find("route0.merge.blocks.2.out").unwrap();
    let vd = forward_all(gd, &pd, &x, &mut Fixed(vec![]), &[rq_d]).unwrap();
    let vr = forward_all(
        gr,
        &pr,
        &x,
        &mut Fixed(idx.clone()),
        &[rq_r, entry, gathered, merged],
    )
    .unwrap();
    let (rd, rr) = (host(&vd[&rq_d]), host(&vr[&rq_r]));
    let (e, gth, m) = (host(&vr[&entry]), host(&vr[&gathered]), host(&vr[&merged]));
    for b in 0..BATCH {
        for t in 0..8 {
            // Text tokens: gathered whole and in place; the first routed block sees them as
            // dense does, so their rotated queries agree too.
            assert_eq!(row(&gth, 40, b, t), row(&e, 72, b, t));
            let diff = row(&rr, 40, b, t).iter().zip(row(&rd, 72, b, t));
            assert!(
                diff.clone().all(|(a, c)| (a - c).abs() < 1e-5),
                "text {b},{t}"
            );
        }
        for j in 0..32 {
            // Kept image token j is token idx[j] of the image stream (row 8 + idx): its rotated
            // query, computed per token before attention, is the dense one at that position.
            let n = 8 + idx[b * 32 + j] as usize;
            assert_eq!(row(&gth, 40, b, 8 + j), row(&e, 72, b, n));
            let (a, c) = (row(&rr, 40, b, 8 + j), row(&rd, 72, b, n));
            let worst = a
                .iter()
                .zip(c)
                .map(|(a, c)| (a - c).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-5, "kept token {j} of sample {b}: {worst}");
        }
        // Routed image tokens leave the region with exactly their value before it.
        let kept: Vec<usize> = idx[b * 32..(b + 1) * 32]
            .iter()
            .map(|&i| 8 + i as usize)
            .collect();
        for n in (8..72).filter(|n| !kept.contains(n)) {
            assert_eq!(row(&m, 72, b, n), row(&e, 72, b, n));
        }
    }
}

#[test]
fn rate_zero_over_joined_streams_equals_dense() {
    let dense = flux_small(&[]);
    let routed = flux_small(&["0:1-4"]);
    let w = weights(&dense.routed);
    let x = inputs(&host_inputs(&dense.routed, 2));
    let run = |g: &Graph, idx: Vec<i64>| {
        let p = ParamStore::<Cpu>::from_host(g, &w, &Default::default()).unwrap();
        host(&forward(g, &p, &x, &mut Fixed(idx)).unwrap())
    };
    // All 64 tokens kept, in a shuffled order.
    let perm: Vec<i64> = (0..BATCH as i64)
        .flat_map(|b| (0..64).map(move |j| (j * 13 + b) % 64))
        .collect();
    let (a, b) = (run(&dense.routed, vec![]), run(&routed.routed, perm));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-4, "{worst}");
}

#[test]
fn a_route_over_the_text_stream_passes_the_image_whole() {
    // Flux-shaped model, route 0.5 of the 8 text tokens over blocks 1..=3: every image token
    // enters the region (in place, after the kept text) and leaves through the merge; the
    // routed text tokens leave with their value from before the region.
    let routed = flux_small(&["0.5:1-3@text"]);
    let g = &routed.routed;
    let p = ParamStore::<Cpu>::from_host(g, &weights(g), &Default::default()).unwrap();
    let x = inputs(&host_inputs(g, 6));
    let idx: Vec<i64> = vec![6, 1, 3, 0, 2, 7, 5, 4];
    let entry = g.find("blocks.0.out").unwrap();
    let gathered = g.find("route0.gather.blocks.0.out").unwrap();
    let merged = g.find("route0.merge.blocks.3.out").unwrap();
    let v = forward_all(
        g,
        &p,
        &x,
        &mut Fixed(idx.clone()),
        &[entry, gathered, merged],
    )
    .unwrap();
    let (e, gth, m) = (host(&v[&entry]), host(&v[&gathered]), host(&v[&merged]));
    for b in 0..BATCH {
        let kept = &idx[b * 4..(b + 1) * 4];
        for (j, &t) in kept.iter().enumerate() {
            assert_eq!(row(&gth, 68, b, j), row(&e, 72, b, t as usize));
        }
        for n in 0..64 {
            assert_eq!(row(&gth, 68, b, 4 + n), row(&e, 72, b, 8 + n));
        }
        for t in (0..8).filter(|t| !kept.contains(&(*t as i64))) {
            assert_eq!(row(&m, 72, b, t), row(&e, 72, b, t));
        }
    }
}

#[test]
fn new_family_models_on_tract_equal_burn() {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "mnist-flux-small.json",
        "mnist-mmdit-small.json",
        "mnist-pixart-small.json",
        "mnist-wan-small.json",
    ] {
        let dense = small(file, &[]);
        let g = &dense.routed;
        let w = weights(g);
        let host_in = host_inputs(g, 3);
        let p = ParamStore::<Cpu>::from_host(g, &w, &Default::default()).unwrap();
        let burn_out = host(&forward(g, &p, &inputs(&host_in), &mut Fixed(vec![])).unwrap());
        let tensors: HashMap<String, Vec<f32>> = param_specs(g)
            .into_iter()
            .zip(w)
            .map(|(s, v)| (s.name, v))
            .collect();
        let weights = Weights {
            source: "fresh init".into(),
            tensors,
        };
        for opset in [17, 23] {
            let opts = ExportOptions {
                opset,
                ..Default::default()
            };
            let mut proto = export(g, dense.model.training.objective, &weights, &opts).unwrap();
            let path = dir.path().join(format!("{file}-{opset}.onnx"));
            write_model(&mut proto, &path, ExternalData::Auto).unwrap();
            let m = TractModel::load(&path, &proto, BATCH).unwrap();
            let feed = host_in
                .iter()
                .map(|(_, v, s)| HostValue::F32(v.clone(), s.clone()))
                .collect();
            let out = m.run(feed).unwrap();
            let worst = out
                .iter()
                .zip(&burn_out)
                .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
                .fold(0.0, f32::max);
            assert!(worst < 1e-4, "{file} at opset {opset}: {worst}");
        }
    }
}

#[test]
fn a_padded_text_token_changes_nothing() {
    // The mask's zeros must remove those keys: changing a padded token's embedding leaves the
    // output unchanged, changing a real one does not.
    let dense = small("mnist-pixart-small.json", &[]);
    let g = &dense.routed;
    let p = ParamStore::<Cpu>::from_host(g, &weights(g), &Default::default()).unwrap();
    let host_in = host_inputs(g, 4);
    let run = |h: &[(InputRole, Vec<f32>, Vec<usize>)]| {
        host(&forward(g, &p, &inputs(h), &mut Fixed(vec![])).unwrap())
    };
    let base = run(&host_in);
    let ctx = host_in
        .iter()
        .position(|h| h.0 == InputRole::Context)
        .unwrap();
    let (l, dc) = (host_in[ctx].2[1], host_in[ctx].2[2]);
    let bumped = |token: usize| {
        let mut h = host_in.clone();
        for c in 0..dc {
            h[ctx].1[(l + token) * dc + c] += 3.0; // sample 1
        }
        run(&h)
    };
    let diff = |o: &[f32]| {
        o.iter()
            .zip(&base)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    };
    assert_eq!(
        diff(&bumped(l - 1)),
        0.0,
        "a padded token leaked into the output"
    );
    assert!(diff(&bumped(0)) > 1e-4, "a real token had no effect");
}

#[test]
fn video_patches_are_frame_row_column_major_and_round_trip() {
    let d = Default::default();
    let (b, c, f, h, w, pt, p) = (2, 3, 4, 4, 6, 2, 2);
    let n = b * c * f * h * w;
    let x: Tensor<Cpu, 5> = Tensor::from_data(
        TensorData::new(
            (0..n).map(|v| v as f32).collect::<Vec<f32>>(),
            [b, c, f, h, w],
        ),
        &d,
    );
    let tokens = ops::patchify_video(x.clone(), pt, p);
    let got = tokens.clone().into_data().into_vec::<f32>().unwrap();
    let (gf, gh, gw) = (f / pt, h / p, w / p);
    let feat = pt * p * p * c;
    for (bi, fi, hi, wi) in (0..b).flat_map(|bi| {
        (0..gf)
            .flat_map(move |fi| (0..gh).flat_map(move |hi| (0..gw).map(move |wi| (bi, fi, hi, wi))))
    }) {
        let token = (fi * gh + hi) * gw + wi;
        for (k, (a, r, s, ch)) in (0..pt)
            .flat_map(|a| {
                (0..p).flat_map(move |r| {
                    (0..p).flat_map(move |s| (0..c).map(move |ch| (a, r, s, ch)))
                })
            })
            .enumerate()
        {
            let src = (((bi * c + ch) * f + fi * pt + a) * h + hi * p + r) * w + wi * p + s;
            assert_eq!(got[(bi * gf * gh * gw + token) * feat + k], src as f32);
        }
    }
    let back = ops::unpatchify_video(tokens, [pt, p], [f, h, w]);
    assert_eq!(back.into_data(), x.into_data());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 10, ..Default::default() })]

    /// Any route over any test-size family: the gathered trunk and positions are the entry's rows
    /// at the drawn indices (text rows whole, in place), the first routed block's rotated queries
    /// equal the dense ones at the kept tokens' original positions, values computed from the text
    /// alone equal the dense graph's bit for bit, and routed tokens leave with their value from
    /// before the region.
    #[test]
    fn any_route_keeps_positions_and_passes_other_streams(
        file in proptest::sample::select(vec![
            "mnist-flux-small.json",
            "mnist-mmdit-small.json",
            "mnist-pixart-small.json",
            "mnist-wan-small.json",
        ]),
        start in 1usize..5,
        len in 0usize..3,
        rate in 0.05f64..0.9,
        seed in 0u64..1000,
    ) {
        let end = (start + len).min(5);
        let route = format!("{rate}:{start}-{end}");
        let dense = small(file, &[]);
        let routed = small(file, &[route.as_str()]);
        let (gd, gr) = (&dense.routed, &routed.routed);
        let w = weights(gd);
        let pd = ParamStore::<Cpu>::from_host(gd, &w, &Default::default()).unwrap();
        let pr = ParamStore::<Cpu>::from_host(gr, &w, &Default::default()).unwrap();
        let x = inputs(&host_inputs(gd, seed));
        let node = |g: &Graph, n: &str| g.find(n);
        let entry_name = format!("blocks.{}.out", start - 1);
        let entry = node(gr, &entry_name).unwrap();
        let entry_ty = gr.ty(entry).clone();
        let text = entry_ty.segment("text").map_or(0, |(_, s)| s.tokens as usize);
        let total = text + 64;
        let gathered = node(gr, &format!("route0.gather.{entry_name}")).unwrap();
        let merged = node(gr, &format!("route0.merge.blocks.{end}.out")).unwrap();
        let pe = node(gr, "route0.gather.pe");
        let rq = (node(gd, &format!("blocks.{start}.rq")), node(gr, &format!("blocks.{start}.rq")));
        let ck = (node(gd, &format!("blocks.{start}.ck")), node(gr, &format!("blocks.{start}.ck")));
        let mut keep_r = vec![entry, gathered, merged];
        keep_r.extend(pe);
        keep_r.extend(rq.1);
        keep_r.extend(ck.1);
        let keep_d: Vec<_> = [rq.0, ck.0].into_iter().flatten().collect();
        let mut rec = super::tests::Recording::new(seed);
        let vr = forward_all(gr, &pr, &x, &mut rec, &keep_r).unwrap();
        let vd = forward_all(gd, &pd, &x, &mut Fixed(vec![]), &keep_d).unwrap();
        let idx = &rec.drawn[0];
        let kept = idx.len() / BATCH;
        let (e, gth, m) = (host(&vr[&entry]), host(&vr[&gathered]), host(&vr[&merged]));
        for b in 0..BATCH {
            let src = |j: usize| text + idx[b * kept + j] as usize;
            for t in 0..text {
                proptest::prop_assert_eq!(row(&gth, text + kept, b, t), row(&e, total, b, t));
            }
            for j in 0..kept {
                proptest::prop_assert_eq!(row(&gth, text + kept, b, text + j), row(&e, total, b, src(j)));
            }
            if let Some(pe) = pe {
                // Known positions: the stem's table, [1, T, axes], broadcast over the batch.
                let table = host(&vd_table(gd, &pd, &x));
                let g = host(&vr[&pe]);
                let axes = table.len() / total;
                for j in 0..kept {
                    let got = &g[(b * (text + kept) + text + j) * axes..][..axes];
                    let want = &table[src(j) * axes..][..axes];
                    proptest::prop_assert_eq!(got, want);
                }
            }
            if let (Some(d), Some(r)) = rq {
                let (rd, rr) = (host(&vd[&d]), host(&vr[&r]));
                for j in 0..kept {
                    let a = row(&rr, text + kept, b, text + j);
                    let c = row(&rd, total, b, src(j));
                    let worst = a.iter().zip(c).map(|(a, c)| (a - c).abs()).fold(0.0, f32::max);
                    proptest::prop_assert!(worst < 1e-5, "kept token {} of sample {}: {}", j, b, worst);
                }
            }
            let kept_rows: Vec<usize> = (0..kept).map(src).collect();
            for n in (text..total).filter(|n| !kept_rows.contains(n)) {
                proptest::prop_assert_eq!(row(&m, total, b, n), row(&e, total, b, n));
            }
        }
        if let (Some(d), Some(r)) = ck {
            // Keys computed from the text alone cross the region untouched.
            proptest::prop_assert_eq!(host(&vd[&d]), host(&vr[&r]));
        }
    }
}

/// The dense graph's `pe` table (the stem's positions).
fn vd_table(g: &Graph, p: &ParamStore<Cpu>, x: &Inputs<Cpu>) -> Value<Cpu> {
    let pe = g.find("pe").unwrap();
    let mut v = forward_all(g, p, x, &mut Fixed(vec![]), &[pe]).unwrap();
    v.remove(&pe).unwrap()
}

/// The fused engine runs every small text and video model as burn's decompositions do: with the
/// fused ops (RoPE, QK head norms, joint, cross- and masked attention, the norms and linears)
/// the forward equals the unfused one, a padded text mask included.
#[test]
fn fused_and_unfused_forwards_agree_on_the_small_text_and_video_models() {
    for file in [
        "mnist-flux-small.json",
        "mnist-mmdit-small.json",
        "mnist-pixart-small.json",
        "mnist-wan-small.json",
    ] {
        let c = small(file, &[]);
        let g = &c.routed;
        let w = weights(g);
        let x = inputs(&host_inputs(g, 3));
        let run = |fused: bool| {
            let p = ParamStore::<Cpu>::from_host(g, &w, &Default::default())
                .unwrap()
                .with_fused(fused);
            host(&forward(g, &p, &x, &mut Fixed(vec![])).unwrap())
        };
        let (a, b) = (run(true), run(false));
        let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (p, q)| m.max((p - q).abs()))
            / scale;
        assert!(err < 1e-4, "{file}: fused vs unfused relative error {err}");
    }
}
