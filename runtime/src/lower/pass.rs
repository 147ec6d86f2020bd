//! One training step's forward and backward pass: the loss of a batch and the gradients of
//! every parameter, computed whole or as concurrent micro-batches whose gradients are summed.
//!
//! Micro-batches (`treadc train --micro-batches N`): the batch is cut into `N` equal parts in
//! batch order; each part's loss is weighted by its share of the batch before the backward, so
//! the summed gradients are those of the batch mean. Every sample keeps its own random streams,
//! so a part draws exactly what it drew inside the whole batch.
//!
//! Each part runs on its own thread and rayon pool ([`PartPools`], the caller's threads divided
//! between the parts), never as a task of a shared pool, which can deadlock: burn-autodiff holds
//! a graph's lock for the whole backward pass, a worker waiting inside a kernel's `join` runs
//! other queued tasks, and a part picked up that way ends its backward by locking every graph,
//! the one held further up its own stack included. A part's pool only ever holds that part's
//! kernel tasks, which take no lock.

use burn::tensor::{ElementConversion, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};
use tread_compiler::config::TrainingConfig;
use tread_compiler::ir::Graph;

use super::forward::Conditioning;
use super::fused::Engine;
use super::objective::training_loss;
use super::store::ParamStore;
use super::value::OpResult;
use crate::condition::Condition;
use crate::routing::PerSampleRoutes;

/// Per-parameter gradients (`None`: the graph does not reach the parameter).
pub type Grads<B> = Vec<Option<Tensor<B, 1>>>;

/// The loss and, when it is finite, the gradients of one pass.
pub type PassResult<B> = (f32, Option<Grads<B>>);

/// What a pass reads: the training graph, its parameters and the batch layout.
pub struct Pass<'a, B: Engine> {
    /// Objective and its settings.
    pub training: &'a TrainingConfig,
    /// The (routed, lowered) training graph.
    pub graph: &'a Graph,
    /// Parameter layout on the autodiff backend (its tensors are replaced per pass).
    pub ad_store: &'a ParamStore<B::Ad>,
    /// The parameters' current values.
    pub params: &'a [Tensor<B, 1>],
    /// Where tensors are made.
    pub device: &'a B::Device,
    /// One image's `[C, H, W]`.
    pub image: [usize; 3],
}

impl<B: Engine> Pass<'_, B> {
    /// Forward and backward over the samples `x` (images laid end to end) with their
    /// conditioning and streams. `weight` scales the loss before the backward (a micro-batch's share of the
    /// batch); the returned loss is the unweighted mean over these samples.
    pub fn run(
        &self,
        x: &[f32],
        cond: &Condition,
        rngs: &mut [ChaCha8Rng],
        route_rngs: &mut [ChaCha8Rng],
        weight: Option<f32>,
    ) -> OpResult<PassResult<B>> {
        let [c, h, w] = self.image;
        let b = rngs.len();
        let x0 =
            Tensor::<B::Ad, 4>::from_data(TensorData::new(x.to_vec(), [b, c, h, w]), self.device);
        let cond = Conditioning::<B::Ad>::from_host(cond, self.device);
        let ad_params: Vec<Tensor<B::Ad, 1>> = self
            .params
            .iter()
            .map(|p| Tensor::from_inner(p.clone()).require_grad())
            .collect();
        let store = self.ad_store.with_tensors(ad_params.clone());
        let loss = training_loss(
            self.training,
            self.graph,
            &store,
            x0,
            &cond,
            rngs,
            &mut PerSampleRoutes { rngs: route_rngs },
        )?;
        let value: f32 = loss.clone().into_scalar().elem::<f32>();
        if !value.is_finite() {
            return Ok((value, None));
        }
        let loss = match weight {
            Some(w) => loss.mul_scalar(w),
            None => loss,
        };
        let grads = loss.backward();
        let g = ad_params.iter().map(|p| p.grad(&grads)).collect();
        // The autodiff references to the parameters (store, ad_params, the graph behind
        // `grads`) end here, so the optimiser can update the parameters in place.
        Ok((value, Some(g)))
    }

    /// [`Pass::run`] over `parts` equal micro-batches, concurrently on `pools` (one pool per
    /// part) or one after the other without them; the loss is the batch mean and the
    /// gradients are those of the batch mean. A part with a non-finite loss makes the whole
    /// pass non-finite (no gradients).
    pub fn run_split(
        &self,
        parts: usize,
        pools: Option<&PartPools>,
        x: &[f32],
        cond: &Condition,
        rngs: &mut [ChaCha8Rng],
        route_rngs: &mut [ChaCha8Rng],
    ) -> OpResult<PassResult<B>> {
        let b = rngs.len();
        if parts == 0 || !b.is_multiple_of(parts) {
            return Err(format!(
                "a batch of {b} cannot be split into {parts} equal micro-batches"
            ));
        }
        if let Some(p) = pools {
            if p.pools.len() != parts {
                return Err(format!(
                    "{} part pools for {parts} micro-batches",
                    p.pools.len()
                ));
            }
        }
        let per = b / parts;
        let len = x.len() / b;
        let weight = Some(1.0 / parts as f32);
        let inputs = x
            .chunks(per * len)
            .zip(rngs.chunks_mut(per))
            .zip(route_rngs.chunks_mut(per))
            .enumerate()
            .map(|(i, ((x, r), rr))| (x, cond.slice(i * per, per), r, rr));
        let results: Vec<OpResult<PassResult<B>>> = match pools {
            None => inputs
                .map(|(x, c, r, rr)| self.run(x, &c, r, rr, weight))
                .collect(),
            Some(p) => std::thread::scope(|scope| {
                let handles: Vec<_> = inputs
                    .zip(&p.pools)
                    .map(|((x, c, r, rr), pool)| {
                        scope.spawn(move || pool.install(|| self.run(x, &c, r, rr, weight)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err("a micro-batch's thread panicked".into()))
                    })
                    .collect()
            }),
        };
        let mut total = 0.0f64;
        let mut grads: Vec<Grads<B>> = Vec::with_capacity(parts);
        let mut finite = true;
        for r in results {
            let (value, g) = r?;
            total += value as f64 / parts as f64;
            match g {
                Some(g) => grads.push(g),
                None => finite = false,
            }
        }
        if !finite {
            return Ok((total as f32, None));
        }
        Ok((total as f32, Some(sum_grads(grads))))
    }
}

/// One rayon pool per micro-batch, the threads of the pool they are made in divided between
/// them (see the module doc for why a part never shares a pool with another).
pub struct PartPools {
    pools: Vec<ThreadPool>,
    /// Threads of the pool the parts' threads were divided from.
    from_threads: usize,
}

impl PartPools {
    /// `parts` pools splitting the current pool's threads, or `None` when there are fewer
    /// threads than parts (the parts then run one after the other).
    pub fn new(parts: usize) -> OpResult<Option<Self>> {
        let threads = rayon::current_num_threads();
        if parts < 2 || threads < parts {
            return Ok(None);
        }
        let pools = (0..parts)
            .map(|i| {
                ThreadPoolBuilder::new()
                    .num_threads(threads / parts)
                    .thread_name(move |t| format!("treadc-part{i}-{t}"))
                    .build()
                    .map_err(|e| format!("micro-batch thread pool: {e}"))
            })
            .collect::<OpResult<Vec<_>>>()?;
        Ok(Some(PartPools {
            pools,
            from_threads: threads,
        }))
    }

    /// `true` when these pools were made for `parts` parts from the current pool's threads.
    pub fn fits(&self, parts: usize) -> bool {
        self.pools.len() == parts && self.from_threads == rayon::current_num_threads()
    }
}

/// The element-wise sum of the parts' gradients, parameter by parameter in parallel.
fn sum_grads<B: Engine>(mut parts: Vec<Grads<B>>) -> Grads<B> {
    let first = parts.remove(0);
    first
        .into_par_iter()
        .enumerate()
        .map(|(i, g)| {
            parts
                .iter()
                .fold(g, |acc, part| match (acc, part[i].clone()) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, None) => a,
                    (None, b) => b,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use crate::lower::tests::{bundled_digits, max_diff, small_recipe};
    use crate::lower::train::{Recipe, Trainer};

    fn with_micro(batch: usize, n: usize) -> Recipe {
        Recipe {
            micro_batches: Some(n),
            init: None,
            ..small_recipe(batch)
        }
    }

    /// 2 and 4 concurrent micro-batches train what the whole batch trains: the same losses and,
    /// after 4 steps, the same parameters up to fp32 rounding (the gradient is summed in
    /// another order). The bound is 200× below how far the parameters moved, so a micro-batch
    /// drawing other samples, noise or routes, or a missing loss weight (the sum of the parts'
    /// means is N× the batch mean), would fail it.
    #[test]
    fn micro_batches_train_what_the_whole_batch_trains() {
        let data = bundled_digits();
        let trainer = |n| Trainer::<Flex>::new(with_micro(8, n), Default::default()).unwrap();
        let start = trainer(1).host_params().unwrap();
        for n in [2, 4] {
            let mut split = trainer(n);
            assert_eq!(split.micro_batches(), n);
            let mut reference = trainer(1);
            for step in 0..4 {
                let (a, b) = (
                    reference.train_step(&data).unwrap(),
                    split.train_step(&data).unwrap(),
                );
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs(),
                    "{n} micro-batches, step {step}: loss {b} against {a}"
                );
            }
            let (pa, pb) = (
                reference.host_params().unwrap(),
                split.host_params().unwrap(),
            );
            let diff = max_diff(&pa, &pb);
            let moved = max_diff(&pa, &start);
            assert!(diff <= 1e-6, "{n} micro-batches: max abs difference {diff}");
            assert!(moved > 200.0 * 1e-6, "the parameters moved only {moved}");
        }
    }

    /// The fused CPU engine splits by 2 where 2 divides the batch, and asks nothing of an odd
    /// one; an explicit count that does not divide the batch is an error, not a silent change.
    #[test]
    fn default_and_invalid_micro_batch_counts() {
        let new = |r| Trainer::<Flex>::new(r, Default::default());
        assert_eq!(new(small_recipe(8)).unwrap().micro_batches(), 2);
        assert_eq!(new(small_recipe(3)).unwrap().micro_batches(), 1);
        let unfused = Recipe {
            fused: false,
            ..small_recipe(8)
        };
        assert_eq!(new(unfused).unwrap().micro_batches(), 1);
        for bad in [0, 3] {
            let err = new(with_micro(8, bad)).err().unwrap();
            assert!(err.contains("micro-batches"), "{err}");
        }
    }
}
