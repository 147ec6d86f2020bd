//! One TREAD training run's state on a burn backend: parameters, EMA, AdamW moments, the step,
//! and the deterministic streams that make a resumed run identical to an uninterrupted one.
//!
//! Determinism: the data order of epoch `e` is a shuffle seeded by `(seed, e)`; everything drawn
//! for sample `k` of the global batch at step `s` (class dropout, noise, σ or t) comes from the
//! ChaCha stream `s` of the run's seed at word `k·2⁴⁰`, its route indices from stream
//! `s ^ 2⁶³` at the same word. So the RNG state *is* `(seed, step)`, both stored in the
//! checkpoint, and a sample's draws do not depend on which data-parallel peer computes it: a
//! batch of B in one process and B/N on each of N peers see the same data, noise and routes.

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tread_compiler::config::{Objective, TrainingConfig};
use tread_compiler::ir::Graph;
use tread_compiler::params::param_specs;
use tread_compiler::passes::fuse;

use super::fused::{AdamEmaState, Engine};
use super::optim::{ema_decay, lr_warmup_factor, AdamState, AdamW};
use super::pass::{PartPools, Pass};
use super::sample::{sample, Guidance, SampleSpec};
use super::store::ParamStore;
use super::value::OpResult;
use crate::checkpoint::{Checkpoint, HostTensor};
use crate::condition::Condition;
use crate::data::Dataset;
use crate::init::init_values;
use crate::text::{caption_for, TextEncoder, PAD};

/// Words of a step's ChaCha stream reserved for each sample of the global batch (2⁴⁰: far more
/// than any image's noise draws), so that sample `k`'s draws start at word `k·2⁴⁰`.
const SAMPLE_STRIDE_WORDS: u128 = 1 << 40;

/// The part of every global batch one trainer computes: samples `[index·b, (index+1)·b)` with
/// `b = batch / count` (data parallelism; `count` peers, each with its own `index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This peer's position among the peers, `0..count`.
    pub index: usize,
    /// Number of peers; divides the batch.
    pub count: usize,
}

impl Shard {
    /// The whole batch (one process, no peers).
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };
}

/// Averages a peer's gradients and loss with the other peers' (an all-reduce); `None` grads
/// (parameters the graph does not reach) stay `None`. Implemented over burn-collective in
/// [`super::collective`].
pub trait GradReducer<B: Backend>: Send {
    /// The mean over peers of `grads` (`None`: this peer's loss was not finite, so it sends
    /// zeros) and of `loss`; returns the averaged gradients and loss, identical on every peer.
    fn mean(
        &mut self,
        params: &[Tensor<B, 1>],
        grads: Option<Vec<Option<Tensor<B, 1>>>>,
        loss: f32,
    ) -> OpResult<(Vec<Option<Tensor<B, 1>>>, f32)>;

    /// Seconds spent inside [`GradReducer::mean`] so far, and the number of calls.
    fn spent(&self) -> (f64, u64);
}

/// The training graphs and recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The routed training graph.
    pub routed: Graph,
    /// The dense graph (evaluation, EMA samples).
    pub dense: Graph,
    /// Objective, init, optimiser and EMA settings.
    pub training: TrainingConfig,
    /// Batch size.
    pub batch: usize,
    /// Run seed.
    pub seed: u64,
    /// Number of classes (the null label is this value), `None` if unconditional.
    pub classes: Option<usize>,
    /// For a text-conditioned model, the encoder its captions go through: each image's label
    /// becomes a caption of that digit (the empty text when dropped) and no label is fed.
    pub text: Option<TextEncoder>,
    /// Run the fused engine: the fusion pass on both graphs and the fused kernels (`false`:
    /// burn's decompositions, `treadc bench --no-fuse`).
    pub fused: bool,
    /// Micro-batches per step and peer (`--micro-batches`); `None`: the backend's default
    /// ([`Engine::MICRO_BATCHES`]) for the fused engine where it divides the peer's batch, else 1.
    pub micro_batches: Option<usize>,
    /// Starting weights in `param_specs` order (`--init-from`); `None`: drawn from the seed.
    pub init: Option<std::sync::Arc<Vec<Vec<f32>>>>,
}

/// A run's state on backend `B` (training differentiates through `B::Ad`, `Autodiff<B>`).
pub struct Trainer<B: Engine> {
    /// Graphs and recipe.
    pub recipe: Recipe,
    /// The graphs lowered: the recipe's, fused when `recipe.fused` (training, dense).
    lowered: (Graph, Graph),
    /// Completed steps.
    pub step: u64,
    params: Vec<Tensor<B, 1>>,
    ema: Vec<Tensor<B, 1>>,
    adam: AdamState<B>,
    store: ParamStore<B>,
    ad_store: ParamStore<B::Ad>,
    opt: AdamW,
    device: B::Device,
    epoch_cache: Option<(u64, Vec<usize>)>,
    shard: Shard,
    reducer: Option<Box<dyn GradReducer<B>>>,
    /// Micro-batches per step, computed concurrently (see [`super::pass`]).
    micro_batches: usize,
    /// Their thread pools (made at the first split step; `None` with too few threads).
    part_pools: Option<PartPools>,
}

/// The micro-batches a trainer with `local` samples per step uses (see [`Recipe::micro_batches`]
/// and [`super::pass`]): the recipe's when set (an error if they do not divide `local`), else the
/// backend's default for the fused engine where it divides `local`, else 1.
fn micro_batches_for<B: Engine>(recipe: &Recipe, local: usize) -> OpResult<usize> {
    match recipe.micro_batches {
        Some(n) if n == 0 || !local.is_multiple_of(n) => Err(format!(
            "a batch of {local} per peer cannot be split into {n} equal micro-batches"
        )),
        Some(n) => Ok(n),
        None if recipe.fused && local.is_multiple_of(B::MICRO_BATCHES) => Ok(B::MICRO_BATCHES),
        None => Ok(1),
    }
}

/// Checks that `ckpt` holds every tensor of `recipe`'s model with its shape and nothing else;
/// the message names the first missing or mismatched tensor.
pub fn check_checkpoint(recipe: &Recipe, ckpt: &Checkpoint) -> Result<(), String> {
    checkpoint_sets(recipe, ckpt).map(|_| ())
}

/// The checkpoint's parameter, EMA and moment values in `param_specs` order (checked).
fn checkpoint_sets(recipe: &Recipe, ckpt: &Checkpoint) -> Result<Vec<Vec<Vec<f32>>>, String> {
    let specs = param_specs(&recipe.routed);
    let mut sets: Vec<Vec<Vec<f32>>> = vec![];
    for prefix in ["model", "ema", "adam_m", "adam_v"] {
        let mut set = vec![];
        for s in &specs {
            let name = format!("{prefix}/{}", s.name);
            let t = ckpt.tensors.get(&name).ok_or_else(|| {
                format!("tensor `{name}` is missing: the checkpoint was written for another model")
            })?;
            if t.shape != s.shape {
                return Err(format!(
                    "tensor `{name}` has shape {:?}, the model needs {:?}",
                    t.shape, s.shape
                ));
            }
            set.push(t.data.clone());
        }
        sets.push(set);
    }
    let expected = 4 * specs.len();
    if ckpt.tensors.len() != expected {
        return Err(format!(
            "the checkpoint has {} tensors, the model needs {expected}: it was written for \
             another model",
            ckpt.tensors.len()
        ));
    }
    Ok(sets)
}

/// The encoded captions of a batch's labels: each sample draws its caption from its own stream
/// (after its dropout draw); the null label gets the empty text.
fn captions(
    enc: &TextEncoder,
    labels: &[i64],
    classes: Option<usize>,
    rngs: &mut [ChaCha8Rng],
) -> OpResult<crate::text::TextBatch> {
    let null = classes.map(|k| k as i64);
    let ids = labels
        .iter()
        .zip(rngs.iter_mut())
        .map(|(&l, rng)| {
            if Some(l) == null {
                return Ok(vec![PAD; enc.dims.len]);
            }
            let caption = caption_for(l as usize, rng.random::<u64>());
            enc.tokenize(&caption)
                .map_err(|e| format!("the caption {caption:?} of label {l}: {e}"))
        })
        .collect::<OpResult<Vec<_>>>()?;
    Ok(enc.encode_ids(&ids))
}

/// Host AdamW moments `(m, v)` to restore.
type Moments<'a> = (&'a [Vec<f32>], &'a [Vec<f32>]);

fn to_host<B: Backend>(t: &Tensor<B, 1>) -> OpResult<Vec<f32>> {
    t.to_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

impl<B: Engine> Trainer<B> {
    /// A fresh run: parameters initialised from the seed (EMA = parameters, zero moments).
    pub fn new(recipe: Recipe, device: B::Device) -> OpResult<Self> {
        let specs = param_specs(&recipe.routed);
        let values = match &recipe.init {
            Some(given) => given.as_ref().clone(),
            None => init_values(&specs, recipe.training.init, recipe.seed),
        };
        Self::with_values(recipe, device, &values, None, None, 0)
    }

    fn with_values(
        recipe: Recipe,
        device: B::Device,
        values: &[Vec<f32>],
        ema: Option<&[Vec<f32>]>,
        moments: Option<Moments<'_>>,
        step: u64,
    ) -> OpResult<Self> {
        let lowered = if recipe.fused {
            let f = |g: &Graph| fuse(g).map(|(g, _)| g).map_err(|d| d.to_string());
            (f(&recipe.routed)?, f(&recipe.dense)?)
        } else {
            (recipe.routed.clone(), recipe.dense.clone())
        };
        let store =
            ParamStore::<B>::from_host(&recipe.routed, values, &device)?.with_fused(recipe.fused);
        let ad_store = ParamStore::<B::Ad>::from_host(&recipe.routed, values, &device)?
            .with_fused(recipe.fused);
        let params = store.tensors.clone();
        let load = |v: &[Vec<f32>]| -> OpResult<Vec<Tensor<B, 1>>> {
            Ok(ParamStore::<B>::from_host(&recipe.routed, v, &device)?.tensors)
        };
        let ema = match ema {
            Some(e) => load(e)?,
            None => params.clone(),
        };
        let adam = match moments {
            Some((m, v)) => AdamState {
                m: load(m)?,
                v: load(v)?,
            },
            None => AdamState::zeros(&params),
        };
        let t = &recipe.training;
        let opt = AdamW {
            lr: t.lr,
            weight_decay: t.weight_decay,
            ..Default::default()
        };
        let micro_batches = micro_batches_for::<B>(&recipe, recipe.batch)?;
        Ok(Trainer {
            recipe,
            lowered,
            step,
            params,
            ema,
            adam,
            store,
            ad_store,
            opt,
            device,
            epoch_cache: None,
            shard: Shard::WHOLE,
            reducer: None,
            micro_batches,
            part_pools: None,
        })
    }

    /// Micro-batches per step (1: the plain step).
    pub fn micro_batches(&self) -> usize {
        self.micro_batches
    }

    /// Makes this trainer one data-parallel peer: it computes `shard` of every batch and
    /// averages gradients with the other peers through `reducer` before each update.
    pub fn into_peer(mut self, shard: Shard, reducer: Box<dyn GradReducer<B>>) -> OpResult<Self> {
        let b = self.recipe.batch;
        if shard.count == 0 || !b.is_multiple_of(shard.count) || shard.index >= shard.count {
            return Err(format!(
                "a batch of {b} cannot be split into {} equal shards",
                shard.count
            ));
        }
        self.micro_batches = micro_batches_for::<B>(&self.recipe, b / shard.count)?;
        self.shard = shard;
        self.reducer = Some(reducer);
        Ok(self)
    }

    /// The stream of global sample `k` at step `s` (`route`: the route-index stream).
    fn sample_rng(&self, s: u64, k: usize, route: bool) -> ChaCha8Rng {
        let mut r = ChaCha8Rng::seed_from_u64(self.recipe.seed);
        r.set_stream(if route { s ^ (1 << 63) } else { s });
        r.set_word_pos(k as u128 * SAMPLE_STRIDE_WORDS);
        r
    }

    /// Dataset indices of the batch at step `s`: positions `[s·B, (s+1)·B)` of the epochs'
    /// shuffles laid end to end.
    pub fn batch_indices(&mut self, n: usize, s: u64) -> Vec<usize> {
        let b = self.recipe.batch;
        (0..b)
            .map(|k| {
                let pos = s as u128 * b as u128 + k as u128;
                let (epoch, off) = ((pos / n as u128) as u64, (pos % n as u128) as usize);
                if self.epoch_cache.as_ref().map(|c| c.0) != Some(epoch) {
                    let mut perm: Vec<usize> = (0..n).collect();
                    let mut r = ChaCha8Rng::seed_from_u64(self.recipe.seed ^ 0xda7a_0de5);
                    r.set_stream(epoch);
                    perm.shuffle(&mut r);
                    self.epoch_cache = Some((epoch, perm));
                }
                self.epoch_cache.as_ref().map_or(0, |c| c.1[off])
            })
            .collect()
    }

    /// One training step (forward with routing, backward, AdamW, EMA); returns the loss (the
    /// mean over peers when data-parallel). A non-finite loss is returned without updating
    /// anything.
    pub fn train_step(&mut self, data: &Dataset) -> OpResult<f32> {
        let s = self.step;
        let global = self.batch_indices(data.n, s);
        let b = global.len() / self.shard.count;
        let first = self.shard.index * b;
        let idx = &global[first..first + b];
        let mut rngs: Vec<ChaCha8Rng> = (first..first + b)
            .map(|k| self.sample_rng(s, k, false))
            .collect();
        let mut route_rngs: Vec<ChaCha8Rng> = (first..first + b)
            .map(|k| self.sample_rng(s, k, true))
            .collect();
        let len = data.image_len();
        let mut x = Vec::with_capacity(b * len);
        for &i in idx {
            x.extend_from_slice(data.image(i));
        }
        let dropout = self.recipe.training.class_dropout;
        let labels: Option<Vec<i64>> = self.recipe.classes.map(|k| {
            idx.iter()
                .zip(rngs.iter_mut())
                .map(|(&i, rng)| {
                    if rng.random::<f64>() < dropout {
                        k as i64
                    } else {
                        data.labels[i]
                    }
                })
                .collect()
        });
        let cond = match (labels, &self.recipe.text, &data.texts) {
            (None, _, _) => Condition::None,
            (Some(l), None, _) => Condition::Labels(l),
            (Some(l), Some(_), Some(stored)) => {
                let null = self.recipe.classes.map(|k| k as i64);
                let rows: Vec<Option<usize>> = idx
                    .iter()
                    .zip(&l)
                    .map(|(&i, &label)| (Some(label) != null).then_some(i))
                    .collect();
                Condition::Text(stored.batch.gather(&rows))
            }
            (Some(l), Some(enc), None) => {
                Condition::Text(captions(enc, &l, self.recipe.classes, &mut rngs)?)
            }
        };
        let parts = self.micro_batches;
        if parts > 1 && !self.part_pools.as_ref().is_some_and(|p| p.fits(parts)) {
            self.part_pools = PartPools::new(parts)?;
        }
        let pass = Pass {
            training: &self.recipe.training,
            graph: &self.lowered.0,
            ad_store: &self.ad_store,
            params: &self.params,
            device: &self.device,
            image: [data.channels, data.height, data.width],
        };
        let (value, local) = if self.micro_batches == 1 {
            pass.run(&x, &cond, &mut rngs, &mut route_rngs, None)?
        } else {
            pass.run_split(
                self.micro_batches,
                self.part_pools.as_ref(),
                &x,
                &cond,
                &mut rngs,
                &mut route_rngs,
            )?
        };
        let (g, value) = match self.reducer.as_mut() {
            Some(r) => r.mean(&self.params, local, value)?,
            None => match local {
                Some(g) => (g, value),
                None => return Ok(value),
            },
        };
        if !value.is_finite() {
            return Ok(value);
        }
        let d = ema_decay(
            self.recipe.training.ema_decay,
            self.recipe.training.ema_warmup,
            s,
        );
        let mut h = self.opt.with_step(s + 1, d);
        h.lr *= lr_warmup_factor(self.recipe.training.lr_warmup, s) as f32;
        let state = AdamEmaState {
            m: &mut self.adam.m,
            v: &mut self.adam.v,
            ema: &mut self.ema,
        };
        if self.recipe.fused {
            B::fused_adamw_ema(&mut self.params, g, state, h);
        } else {
            super::fused::reference::adamw_ema(&mut self.params, g, state, h);
        }
        self.step += 1;
        Ok(value)
    }

    /// Samples from the EMA (or raw) weights with the dense graph.
    pub fn sample(
        &self,
        spec: &SampleSpec,
        guidance: &Guidance,
        use_ema: bool,
    ) -> OpResult<Vec<f32>> {
        let store = self.store.with_tensors(if use_ema {
            self.ema.clone()
        } else {
            self.params.clone()
        });
        sample(
            self.recipe.training.objective,
            &self.lowered.1,
            &store,
            spec,
            guidance,
            &self.device,
        )
    }

    /// The EMA weights as a parameter store (for sampling and export).
    pub fn ema_store(&self) -> ParamStore<B> {
        self.store.with_tensors(self.ema.clone())
    }

    /// Host copies of parameters, EMA and moments as checkpoint tensors.
    pub fn to_checkpoint(&self) -> OpResult<Checkpoint> {
        let mut tensors = BTreeMap::new();
        for (prefix, set) in [
            ("model", &self.params),
            ("ema", &self.ema),
            ("adam_m", &self.adam.m),
            ("adam_v", &self.adam.v),
        ] {
            for (spec, t) in self.store.specs.iter().zip(set) {
                tensors.insert(
                    format!("{prefix}/{}", spec.name),
                    HostTensor {
                        shape: spec.shape.clone(),
                        data: to_host(t)?,
                    },
                );
            }
        }
        let mut meta = BTreeMap::new();
        meta.insert("step".to_string(), self.step.to_string());
        meta.insert("seed".to_string(), self.recipe.seed.to_string());
        Ok(Checkpoint { tensors, meta })
    }

    /// Restores a run from checkpoint tensors; every parameter must be present with its shape.
    /// Returns a message naming the first missing or mismatched tensor.
    pub fn from_checkpoint(
        recipe: Recipe,
        device: B::Device,
        ckpt: &Checkpoint,
        step: u64,
    ) -> Result<Self, String> {
        let sets = checkpoint_sets(&recipe, ckpt)?;
        Self::with_values(
            recipe,
            device,
            &sets[0],
            Some(&sets[1]),
            Some((&sets[2], &sets[3])),
            step,
        )
    }

    /// Seconds spent averaging with the other peers and the number of steps that did (`None`
    /// when this trainer is not a peer).
    pub fn reduce_spent(&self) -> Option<(f64, u64)> {
        self.reducer.as_ref().map(|r| r.spent())
    }

    /// The raw parameters on the host (for tests comparing runs bit for bit).
    pub fn host_params(&self) -> OpResult<Vec<Vec<f32>>> {
        self.params.iter().map(to_host).collect()
    }

    /// The objective.
    pub fn objective(&self) -> Objective {
        self.recipe.training.objective
    }
}
