//! Output buffers that start uninitialised. A kernel that writes every value of its output
//! takes it as `&mut [MaybeUninit<f32>]`; [`uninit_buffer`] then saves the zeroing pass of
//! `vec![0.0; len]`. A kernel that accumulates into
//! its output zeroes each region with [`zeroed`] inside the parallel task that owns it, so the
//! zeroing is split across the cores and touches cache lines just before they are written,
//! instead of one serial memset of the whole buffer on the calling thread.

use std::mem::MaybeUninit;

/// A buffer of `len` values that `fill` initialises completely.
///
/// # Safety
/// `fill` must write every one of the `len` values before returning.
pub(crate) unsafe fn uninit_buffer(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<f32>]),
) -> Vec<f32> {
    let mut v: Vec<MaybeUninit<f32>> = Vec::with_capacity(len);
    // SAFETY: MaybeUninit needs no initialisation; `fill` initialises all `len` values (caller's
    // contract) before the buffer is reinterpreted as initialised f32 (same layout).
    unsafe {
        v.set_len(len);
        fill(&mut v);
        let mut v = std::mem::ManuallyDrop::new(v);
        Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), len, v.capacity())
    }
}

/// Zeroes `region` and returns it as initialised values (safe: every value is written first).
pub(crate) fn zeroed(region: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for v in region.iter_mut() {
        v.write(0.0);
    }
    // SAFETY: every value was just initialised; MaybeUninit<f32> and f32 share their layout.
    unsafe { &mut *(region as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Copies `src` into `region` (equal lengths) and returns it as initialised values
/// (`write_copy_of_slice` of Rust 1.93, for the crate's older minimum version).
pub(crate) fn copied<'a>(region: &'a mut [MaybeUninit<f32>], src: &[f32]) -> &'a mut [f32] {
    assert_eq!(region.len(), src.len(), "copied: lengths");
    for (v, &x) in region.iter_mut().zip(src) {
        v.write(x);
    }
    // SAFETY: every value was just initialised; MaybeUninit<f32> and f32 share their layout.
    unsafe { &mut *(region as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A kernel output for tests: initialised to NaN (so reading it back is sound), which any value
/// the kernel fails to write leaves visible.
#[cfg(test)]
pub(crate) fn poisoned(len: usize) -> Vec<MaybeUninit<f32>> {
    vec![MaybeUninit::new(f32::NAN); len]
}

/// The values of a [`poisoned`] buffer after a kernel wrote it.
#[cfg(test)]
pub(crate) fn read(v: &[MaybeUninit<f32>]) -> Vec<f32> {
    // SAFETY: `poisoned` initialised every value, and kernels only write initialised values.
    v.iter().map(|x| unsafe { x.assume_init() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_initialises_every_value() {
        // SAFETY: `zeroed` writes all 1000 values.
        let v = unsafe {
            uninit_buffer(1000, |b| {
                zeroed(b)[7] = 1.0;
            })
        };
        assert_eq!(v.iter().filter(|&&x| x == 0.0).count(), 999);
        assert_eq!(v[7], 1.0);
    }

    #[test]
    fn copied_writes_the_source() {
        let mut out = poisoned(3);
        copied(&mut out, &[1.0, -2.0, 3.5])[1] *= 2.0;
        assert_eq!(read(&out), [1.0, -4.0, 3.5]);
    }
}
