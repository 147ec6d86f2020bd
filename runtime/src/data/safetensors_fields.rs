//! Reading checked tensors out of a safetensors file for the data loaders: the header, a named
//! tensor, its values as f32 or i64, class labels, finiteness; each failure a diagnostic naming
//! the file and the tensor.

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use tread_compiler::diag::{Diagnostic, Location};

/// Parses a safetensors file's bytes, as a diagnostic naming `file` on failure.
pub(crate) fn parse<'a>(bytes: &'a [u8], file: &str) -> Result<SafeTensors<'a>, Diagnostic> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        Diagnostic::new(
            Location::Item("header".into()),
            "cannot parse the safetensors file",
        )
        .expected("an 8-byte little-endian header length, a JSON header, then tensor data")
        .found(e.to_string())
        .in_file(file)
    })
}

/// The tensor `name` of `st`, or a diagnostic listing the tensors the file holds.
pub(super) fn tensor<'a>(
    st: &'a SafeTensors<'_>,
    name: &str,
    want: &str,
    file: &str,
) -> Result<TensorView<'a>, Diagnostic> {
    st.tensor(name).map_err(|_| {
        let mut names = st.names();
        names.sort();
        Diagnostic::new(
            Location::Item(format!("tensor `{name}`")),
            format!("no tensor named `{name}`"),
        )
        .expected(format!("a tensor `{name}` {want}"))
        .found(if names.is_empty() {
            "no tensors".to_string()
        } else {
            format!("tensors {}", names.join(", "))
        })
        .in_file(file)
    })
}

/// A float tensor's values as f32 (F16 and BF16 widened exactly); other dtypes are refused.
pub(crate) fn floats(
    view: &TensorView<'_>,
    at: &Location,
    file: &str,
) -> Result<Vec<f32>, Diagnostic> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
            .collect(),
        other => {
            return Err(Diagnostic::new(at.clone(), "unsupported float dtype")
                .expected("F32 (or F16 / BF16, widened to f32)")
                .found(other.to_string())
                .in_file(file))
        }
    })
}

/// An integer tensor's values as i64 (I64, I32, U8 or BOOL); other dtypes are refused.
pub(super) fn ints(
    view: &TensorView<'_>,
    at: &Location,
    file: &str,
) -> Result<Vec<i64>, Diagnostic> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::I64 => data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect(),
        Dtype::I32 => data
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
            .collect(),
        Dtype::U8 | Dtype::BOOL => data.iter().map(|&b| b as i64).collect(),
        other => {
            return Err(Diagnostic::new(at.clone(), "unsupported integer dtype")
                .expected("I64, I32, U8 or BOOL")
                .found(other.to_string())
                .in_file(file))
        }
    })
}

/// The `labels` tensor `[n]` of a safetensors file, checked to be class indices.
pub(super) fn read_labels(
    st: &SafeTensors<'_>,
    n: usize,
    file: &str,
) -> Result<Vec<i64>, Diagnostic> {
    let lab = tensor(st, "labels", "[N] of I64 or I32", file)?;
    let at = Location::Item("tensor `labels`".into());
    check_labels_shape(lab.shape(), n, &at, file)?;
    let labels = ints(&lab, &at, file)?;
    check_labels_non_negative(&labels, "tensor `labels`", file)?;
    Ok(labels)
}

/// Checks a labels shape is `[n]`.
pub(super) fn check_labels_shape(
    shape: &[usize],
    n: usize,
    at: &Location,
    file: &str,
) -> Result<(), Diagnostic> {
    if shape == [n] {
        return Ok(());
    }
    Err(
        Diagnostic::new(at.clone(), "labels do not match the latents")
            .expected(format!("shape [{n}] (one label per latent)"))
            .found(format!("shape {shape:?}"))
            .in_file(file),
    )
}

/// Checks every value is finite, `per` values to an `item` (a latent, a stored text's row); the
/// error names `what` (the tensor), the item and the element.
pub(super) fn check_finite(
    values: &[f32],
    per: usize,
    (what, item): (&str, &str),
    file: &str,
) -> Result<(), Diagnostic> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(j) => Err(Diagnostic::new(
            Location::Item(format!("{what}, {item} {}", j / per)),
            format!("{item} value is not finite"),
        )
        .expected("finite values")
        .found(format!(
            "{} at element {} of that {item}",
            values[j],
            j % per
        ))
        .in_file(file)),
    }
}

/// Checks every label is a class index (`>= 0`).
pub(super) fn check_labels_non_negative(
    labels: &[i64],
    what: &str,
    file: &str,
) -> Result<(), Diagnostic> {
    match labels.iter().position(|&l| l < 0) {
        None => Ok(()),
        Some(i) => Err(Diagnostic::new(
            Location::Item(format!("{what}, label {i}")),
            "negative label",
        )
        .expected("a class index >= 0")
        .found(labels[i].to_string())
        .in_file(file)),
    }
}

/// IEEE half precision to single (exact: every f16 is an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    match exp {
        0 => {
            // Zero or subnormal: mant * 2^-24.
            let v = mant as f32 * f32::from_bits(0x3380_0000);
            if sign != 0 {
                -v
            } else {
                v
            }
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (mant << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (mant << 13)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_is_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
