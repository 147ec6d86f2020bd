//! The fused CPU engine's kernels: forward and backward of each fused op on raw, contiguous,
//! row-major f32 slices. No burn here (the glue that wraps these as burn ops with their own
//! backward is `lower/fused/`), so each kernel is tested on plain vectors.
//!
//! Why hand-written kernels: under `Autodiff<Flex>` burn 0.21 decomposes layer norm, tanh-GELU
//! and attention into many single-threaded, allocating passes (see ARCHITECTURE.md, "The fused
//! engine"). Each kernel here is one pass over its data, parallel over rows, samples or
//! (sample, head) pairs with rayon, with inner loops simple enough for the compiler to vectorise.
//! Matrix products go through the `gemm` crate (the one burn-flex uses) with strides, so no
//! kernel copies a strided view.

pub mod adamw;
pub mod attention;
pub mod buffer;
pub mod cross_attention;
pub mod elementwise;
mod gemm;
pub mod linear;
pub mod norm;
pub mod rope;
pub mod simd;
pub mod tokens;

/// Rows per rayon task for row-wise kernels: large enough that scheduling costs nothing,
/// small enough that two cores share a 64-token batch.
pub(crate) const ROW_CHUNK: usize = 64;

/// Elements per rayon task for element-wise kernels.
pub(crate) const ELEM_CHUNK: usize = 1 << 14;

/// A raw pointer that tasks writing disjoint regions of one buffer may share.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(*mut f32);

impl SharedMut {
    pub(crate) fn new(p: *mut f32) -> Self {
        SharedMut(p)
    }

    /// The pointer (a method, so closures capture the `Send + Sync` wrapper, not the field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: every user writes a region no other task touches (documented at each use).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}
