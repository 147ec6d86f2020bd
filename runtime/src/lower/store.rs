//! Learned tensors (flat, one per `ParamSpec`) and fixed tables of a lowered graph.

use std::collections::HashMap;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use tread_compiler::ir::{Graph, Op};
use tread_compiler::params::{param_specs, ParamSpec};

use super::value::OpResult;
use tread_compiler::tables;

/// The tensors a graph's forward reads: learned parameters (kept flat so that optimiser, EMA
/// and checkpoints treat them uniformly) and fixed tables (position embedding, frequencies).
#[derive(Debug, Clone)]
pub struct ParamStore<B: Backend> {
    /// What each tensor is (names, shapes, init roles), in the compiler's order.
    pub specs: Vec<ParamSpec>,
    /// The tensors, flat, aligned with `specs`.
    pub tensors: Vec<Tensor<B, 1>>,
    index: HashMap<String, usize>,
    fixed: HashMap<String, Tensor<B, 2>>,
    /// Lower the fused ops to the backend's kernels (the default) or to their burn
    /// decompositions (see [`super::fused::choice::Kernels`]).
    pub fused: bool,
}

impl<B: Backend> ParamStore<B> {
    /// A store for `g` with the given host values (aligned with `param_specs(g)`).
    pub fn from_host(g: &Graph, values: &[Vec<f32>], device: &B::Device) -> OpResult<Self> {
        let specs = param_specs(g);
        if specs.len() != values.len() {
            return Err(format!(
                "{} tensors for {} parameters",
                values.len(),
                specs.len()
            ));
        }
        let mut tensors = Vec::with_capacity(specs.len());
        for (s, v) in specs.iter().zip(values) {
            if v.len() != s.numel() {
                return Err(format!(
                    "`{}` has {} values, expected {}",
                    s.name,
                    v.len(),
                    s.numel()
                ));
            }
            tensors.push(Tensor::from_data(
                TensorData::new(v.clone(), [v.len()]),
                device,
            ));
        }
        let index = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let mut fixed = HashMap::new();
        for id in g.node_ids() {
            let n = g.node(id);
            match n.op {
                Op::PosEmbed2d { height, width, dim } => {
                    let t = tables::pos_embed_2d(height as usize, width as usize, dim as usize);
                    let shape = [(height * width) as usize, dim as usize];
                    fixed.insert(
                        n.name.clone(),
                        Tensor::from_data(TensorData::new(t, shape), device),
                    );
                }
                Op::Positions {
                    tokens,
                    ref grid,
                    axes,
                    ..
                } => {
                    let grid: Vec<usize> = grid.iter().map(|&g| g as usize).collect();
                    let t = tables::positions(tokens as usize, &grid, axes as usize);
                    let shape = [tokens as usize, axes as usize];
                    fixed.insert(
                        n.name.clone(),
                        Tensor::from_data(TensorData::new(t, shape), device),
                    );
                }
                Op::Rope {
                    ref axes_dims,
                    theta,
                    ..
                } => {
                    let dims: Vec<usize> = axes_dims.iter().map(|&d| d as usize).collect();
                    let m = tables::rope_freqs(&dims, theta);
                    let shape = [dims.len(), dims.iter().sum::<usize>() / 2];
                    fixed.insert(
                        n.name.clone(),
                        Tensor::from_data(TensorData::new(m, shape), device),
                    );
                }
                Op::TimestepEmbed { dim, max_period } => {
                    let f = tables::timestep_freqs(dim as usize, max_period as f64);
                    let shape = [1, f.len()];
                    fixed.insert(
                        n.name.clone(),
                        Tensor::from_data(TensorData::new(f, shape), device),
                    );
                }
                _ => {}
            }
        }
        Ok(ParamStore {
            specs,
            tensors,
            index,
            fixed,
            fused: true,
        })
    }

    /// The same store with the fused kernels switched on or off.
    pub fn with_fused(mut self, fused: bool) -> Self {
        self.fused = fused;
        self
    }

    /// Replaces the tensors (same specs), e.g. after an optimiser step or to swap in the EMA.
    pub fn with_tensors(&self, tensors: Vec<Tensor<B, 1>>) -> Self {
        ParamStore {
            specs: self.specs.clone(),
            tensors,
            index: self.index.clone(),
            fixed: self.fixed.clone(),
            fused: self.fused,
        }
    }

    /// The learned tensor `name` reshaped to its spec's shape of rank `D`.
    pub fn get<const D: usize>(&self, name: &str) -> OpResult<Tensor<B, D>> {
        let i = *self
            .index
            .get(name)
            .ok_or_else(|| format!("no parameter `{name}`"))?;
        let shape = &self.specs[i].shape;
        if shape.len() != D {
            return Err(format!(
                "`{name}` has rank {}, read as rank {D}",
                shape.len()
            ));
        }
        let mut dims = [0usize; D];
        dims.copy_from_slice(shape);
        Ok(self.tensors[i].clone().reshape(dims))
    }

    /// The learned tensor `name`, flat.
    pub fn flat(&self, name: &str) -> OpResult<Tensor<B, 1>> {
        let i = *self
            .index
            .get(name)
            .ok_or_else(|| format!("no parameter `{name}`"))?;
        Ok(self.tensors[i].clone())
    }

    /// True when the store has the learned tensor `name`.
    pub fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The fixed table of node `name`.
    pub fn fixed(&self, name: &str) -> OpResult<Tensor<B, 2>> {
        self.fixed
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no fixed table for `{name}`"))
    }

    /// Moves everything to another backend representation via a function on each tensor.
    pub fn map<B2: Backend>(
        &self,
        f: impl Fn(Tensor<B, 1>) -> Tensor<B2, 1>,
        g2: impl Fn(Tensor<B, 2>) -> Tensor<B2, 2>,
    ) -> ParamStore<B2> {
        ParamStore {
            specs: self.specs.clone(),
            tensors: self.tensors.iter().cloned().map(f).collect(),
            index: self.index.clone(),
            fixed: self
                .fixed
                .iter()
                .map(|(k, v)| (k.clone(), g2(v.clone())))
                .collect(),
            fused: self.fused,
        }
    }
}
