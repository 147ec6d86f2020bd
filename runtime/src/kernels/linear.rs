//! A linear layer `y = x·W + b` (`x [R, I]`, `W [I, O]` as burn stores it, `b [O]`) as one op
//! forward and one backward.
//!
//! Why not burn's `linear`: under `Autodiff<Flex>` it is a matmul node plus a broadcast bias add
//! node. The add is a second pass over the output that allocates and runs on one core (burn-flex
//! parallelises binary ops only from 4M elements), and its backward sums the bias gradient on
//! one core too. Here the bias is written into the output first and the GEMM accumulates onto it
//! (an accumulating GEMM), and the backward runs its three products — `dx = g·Wᵀ`, `dW = xᵀ·g`,
//! `db = Σ_rows g` — concurrently, the transposes as strides (no copies).
//!
//! Outputs are written whole by the GEMM (or the bias fill), so their buffers start
//! uninitialised ([`super::buffer::uninit_buffer`]) instead of being zeroed first.

use rayon::prelude::*;

use super::buffer::uninit_buffer;
use super::gemm::{matmul, Operand};
use super::simd::vectorized;
use super::ROW_CHUNK;

/// Sizes of one linear layer call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearShape {
    /// Rows of `x` (samples × tokens).
    pub rows: usize,
    /// Input features `I`.
    pub inputs: usize,
    /// Output features `O`.
    pub outputs: usize,
}

/// Forward: `x·W (+ b)` as a new `[R, O]` buffer.
pub fn forward(x: &[f32], w: &[f32], b: Option<&[f32]>, s: LinearShape) -> Vec<f32> {
    let LinearShape {
        rows,
        inputs: i,
        outputs: o,
    } = s;
    assert_eq!(x.len(), rows * i, "linear: x length");
    assert_eq!(w.len(), i * o, "linear: weight length");
    if let Some(b) = b {
        assert_eq!(b.len(), o, "linear: bias length");
    }
    if rows * o == 0 {
        return vec![0.0; rows * o];
    }
    if i == 0 {
        // An empty product: the bias alone (or zeros).
        return match b {
            Some(b) => b.repeat(rows),
            None => vec![0.0; rows * o],
        };
    }
    // SAFETY: every value is written: by the bias fill then accumulated onto, or by the GEMM
    // without accumulation (k = i > 0); operand extents checked above.
    unsafe {
        uninit_buffer(rows * o, |dst| {
            if let Some(b) = b {
                dst.par_chunks_mut(ROW_CHUNK * o).for_each(|block| {
                    for row in block.chunks_exact_mut(o) {
                        for (slot, &v) in row.iter_mut().zip(b) {
                            slot.write(v);
                        }
                    }
                });
            }
            matmul(
                (rows, o, i),
                (dst.as_mut_ptr().cast(), o),
                b.is_some(),
                (x.as_ptr(), i, 1),
                (w.as_ptr(), o, 1),
                1.0,
            );
        })
    }
}

/// What [`backward`] computes: the gradients of the tracked inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// `dx = g·Wᵀ`.
    pub x: bool,
    /// `dW = xᵀ·g`.
    pub weight: bool,
    /// `db = Σ_rows g`.
    pub bias: bool,
}

/// Gradients from [`backward`], each present when asked for.
#[derive(Debug, Default)]
pub struct LinearGrads {
    /// `[R, I]`.
    pub x: Option<Vec<f32>>,
    /// `[I, O]`.
    pub weight: Option<Vec<f32>>,
    /// `[O]`.
    pub bias: Option<Vec<f32>>,
}

/// Backward from the output gradient `g` (`[R, O]`): the wanted gradients, computed
/// concurrently (each GEMM also splits itself when large).
pub fn backward(x: &[f32], w: &[f32], g: &[f32], s: LinearShape, want: Wanted) -> LinearGrads {
    let LinearShape {
        rows,
        inputs: i,
        outputs: o,
    } = s;
    assert_eq!(x.len(), rows * i, "linear backward: x length");
    assert_eq!(w.len(), i * o, "linear backward: weight length");
    assert_eq!(g.len(), rows * o, "linear backward: g length");
    let product = |(m, n, k): (usize, usize, usize), lhs: Operand, rhs: Operand| {
        if m * n == 0 || k == 0 {
            return vec![0.0; m * n];
        }
        // SAFETY: the GEMM writes all m·n values (no accumulation, k > 0); the operand
        // extents follow from the lengths checked above.
        unsafe {
            uninit_buffer(m * n, |dst| {
                matmul(
                    (m, n, k),
                    (dst.as_mut_ptr().cast(), n),
                    false,
                    lhs,
                    rhs,
                    1.0,
                )
            })
        }
    };
    let (x_grad, (weight_grad, bias_grad)) = rayon::join(
        // dx[R, I] = g[R, O] · Wᵀ (Wᵀ[o, j] = W[j, o]).
        || {
            want.x
                .then(|| product((rows, i, o), (g.as_ptr(), o, 1), (w.as_ptr(), 1, o)))
        },
        || {
            rayon::join(
                // dW[I, O] = xᵀ[I, R] · g[R, O] (xᵀ[j, r] = x[r, j]).
                || {
                    want.weight
                        .then(|| product((i, o, rows), (x.as_ptr(), 1, i), (g.as_ptr(), o, 1)))
                },
                || want.bias.then(|| column_sums(g, rows, o)),
            )
        },
    );
    LinearGrads {
        x: x_grad,
        weight: weight_grad,
        bias: bias_grad,
    }
}

/// `Σ_r g[r, ·]` over `[rows, width]`: partial sums per fixed block of rows, then added in
/// block order, so the result does not depend on how rayon scheduled the blocks (training is
/// bit-for-bit reproducible).
fn column_sums(g: &[f32], rows: usize, width: usize) -> Vec<f32> {
    let add = |mut acc: Vec<f32>, block: &[f32]| {
        vectorized(
            #[inline(always)]
            || {
                for row in block.chunks_exact(width) {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += v;
                    }
                }
            },
        );
        acc
    };
    if width == 0 {
        return Vec::new();
    }
    let partial: Vec<Vec<f32>> = g[..rows * width]
        .par_chunks(4 * ROW_CHUNK * width)
        .map(|block| add(vec![0.0f32; width], block))
        .collect();
    partial
        .iter()
        .fold(vec![0.0f32; width], |acc, p| add(acc, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(rows: usize, inputs: usize, outputs: usize) -> LinearShape {
        LinearShape {
            rows,
            inputs,
            outputs,
        }
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|k| {
                let h = (k as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed * 97);
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// f64 triple loops.
    fn naive(x: &[f32], w: &[f32], b: Option<&[f32]>, s: LinearShape) -> Vec<f64> {
        let mut y = vec![0.0f64; s.rows * s.outputs];
        for r in 0..s.rows {
            for c in 0..s.outputs {
                let mut acc = b.map_or(0.0, |b| b[c] as f64);
                for j in 0..s.inputs {
                    acc += x[r * s.inputs + j] as f64 * w[j * s.outputs + c] as f64;
                }
                y[r * s.outputs + c] = acc;
            }
        }
        y
    }

    fn close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-5 * scale,
                "{what}[{k}]: {g} vs {w}"
            );
        }
    }

    const SHAPES: [(usize, usize, usize); 5] = [
        (1, 1, 1),
        (3, 5, 7),
        (64, 32, 96),
        (300, 128, 384),
        (17, 200, 3),
    ];

    #[test]
    fn forward_matches_the_f64_product_with_and_without_bias() {
        for (rows, inputs, outputs) in SHAPES {
            let s = shape(rows, inputs, outputs);
            let (x, w, b) = (
                data(rows * inputs, 1),
                data(inputs * outputs, 2),
                data(outputs, 3),
            );
            close(
                &forward(&x, &w, Some(&b), s),
                &naive(&x, &w, Some(&b), s),
                "with bias",
            );
            close(
                &forward(&x, &w, None, s),
                &naive(&x, &w, None, s),
                "without bias",
            );
        }
    }

    #[test]
    fn backward_matches_the_transposed_f64_products() {
        for (rows, inputs, outputs) in SHAPES {
            let s = shape(rows, inputs, outputs);
            let (x, w, g) = (
                data(rows * inputs, 4),
                data(inputs * outputs, 5),
                data(rows * outputs, 6),
            );
            let all = Wanted {
                x: true,
                weight: true,
                bias: true,
            };
            let grads = backward(&x, &w, &g, s, all);
            // dx = g·Wᵀ: a linear of g with weight Wᵀ.
            let wt: Vec<f32> = (0..outputs * inputs)
                .map(|k| w[(k % inputs) * outputs + k / inputs])
                .collect();
            let sx = shape(rows, outputs, inputs);
            close(
                grads.x.as_deref().unwrap_or_default(),
                &naive(&g, &wt, None, sx),
                "dx",
            );
            // dW = xᵀ·g: a linear of xᵀ with weight g.
            let xt: Vec<f32> = (0..inputs * rows)
                .map(|k| x[(k % rows) * inputs + k / rows])
                .collect();
            let sw = shape(inputs, rows, outputs);
            close(
                grads.weight.as_deref().unwrap_or_default(),
                &naive(&xt, &g, None, sw),
                "dW",
            );
            let db: Vec<f64> = (0..outputs)
                .map(|c| (0..rows).map(|r| g[r * outputs + c] as f64).sum())
                .collect();
            close(grads.bias.as_deref().unwrap_or_default(), &db, "db");
        }
    }

    #[test]
    fn backward_computes_only_what_is_wanted() {
        let s = shape(4, 3, 2);
        let (x, w, g) = (data(12, 7), data(6, 8), data(8, 9));
        let only_weight = Wanted {
            x: false,
            weight: true,
            bias: false,
        };
        let grads = backward(&x, &w, &g, s, only_weight);
        assert!(grads.x.is_none() && grads.bias.is_none());
        assert_eq!(grads.weight.map(|v| v.len()), Some(6));
    }
}
