//! A training run on some burn backend, seen without burn: the object-safe [`Session`] that
//! `run.rs` (train, sample), `bench.rs` and the tests drive. [`super::backends`] creates one for
//! a [`super::backends::BackendKind`]; nothing above `lower/` names a burn type or generic.

use std::sync::Arc;

use crate::checkpoint::Checkpoint;
use crate::data::Dataset;

use super::fused::Engine;
use super::sample::{Guidance, SampleSpec};
use super::train::{Recipe, Trainer};
use super::value::OpResult;

/// One run's state (parameters, EMA, AdamW moments, step) on a backend chosen at run time.
pub trait Session {
    /// Completed training steps.
    fn step(&self) -> u64;
    /// The recipe the run was built from (graphs, training config, batch, seed).
    fn recipe(&self) -> &Recipe;
    /// One AdamW + EMA step on the next batch of `data`; returns the loss.
    fn train_step(&mut self, data: &Arc<Dataset>) -> OpResult<f32>;
    /// Samples with the dense graph from the EMA (`use_ema`) or the raw weights.
    fn sample(&self, spec: &SampleSpec, guidance: &Guidance, use_ema: bool) -> OpResult<Vec<f32>>;
    /// Host copies of parameters, EMA and moments, with the step and seed.
    fn to_checkpoint(&self) -> OpResult<Checkpoint>;
    /// The raw parameters on the host, in `param_specs` order (for bit-exact comparisons).
    fn host_params(&self) -> OpResult<Vec<Vec<f32>>>;
    /// A line on the data-parallel peers and their all-reduce time (`None`: one peer).
    fn parallel_report(&self) -> Option<String> {
        None
    }
    /// Micro-batches each step is split into (`None`: data-parallel peers, each its own).
    fn micro_batches(&self) -> Option<usize> {
        None
    }
}

impl<B: Engine> Session for Trainer<B> {
    fn step(&self) -> u64 {
        self.step
    }

    fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    fn train_step(&mut self, data: &Arc<Dataset>) -> OpResult<f32> {
        Trainer::train_step(self, data)
    }

    fn sample(&self, spec: &SampleSpec, guidance: &Guidance, use_ema: bool) -> OpResult<Vec<f32>> {
        Trainer::sample(self, spec, guidance, use_ema)
    }

    fn to_checkpoint(&self) -> OpResult<Checkpoint> {
        Trainer::to_checkpoint(self)
    }

    fn host_params(&self) -> OpResult<Vec<Vec<f32>>> {
        Trainer::host_params(self)
    }

    fn micro_batches(&self) -> Option<usize> {
        Some(Trainer::micro_batches(self))
    }
}
