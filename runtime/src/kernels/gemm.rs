//! The kernels' one door to the `gemm` crate (the GEMM burn-flex uses, AVX-512 through its
//! `x86-v4` feature): a row-major destination with its own row stride, operands given by
//! pointer and strides (so transposes and views cost no copy), an optional accumulation into
//! the destination, a scale, and burn-flex's rule for when to split the product across threads.

use gemm::Parallelism;

/// A strided matrix operand: pointer, row stride, column stride (in elements).
pub(crate) type Operand = (*const f32, usize, usize);

/// burn-flex's threshold for a multithreaded GEMM (m·n·k ≥ 192³): below it, splitting costs
/// more than it gains (and the attention kernel's per-(sample, head) products, already one
/// rayon task each, stay on their thread).
const PARALLEL_FROM: usize = 192 * 192 * 192;

/// `dst = [dst +] scale · lhs · rhs` for an `m × k` by `k × n` product; `dst` is `m × n`
/// row-major with row stride `dst_rs`. Without `accumulate` the destination is only written,
/// never read (the gemm crate sets alpha to 0 and skips the read), so it may start
/// uninitialised.
///
/// # Safety
/// `dst` must be valid for the `m × n` strided extent (reads too when `accumulate`), and the
/// operands for their `m × k` and `k × n` strided extents.
pub(crate) unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    accumulate: bool,
    (lhs, lhs_rs, lhs_cs): Operand,
    (rhs, rhs_rs, rhs_cs): Operand,
    scale: f32,
) {
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_FROM {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}
