//! Precomputed latents: train in a VAE's latent space without running the encoder every step.
//!
//! Why: latent diffusion (DiT, and the TREAD paper's ImageNet runs) trains on VAE latents that
//! are encoded once, offline, by whatever tool the user has (usually Python); these are the two
//! file layouts such tools write most easily.
//!
//! Expected layout, either:
//! - **`FILE.safetensors`** with (other tensors and metadata are ignored)
//!   - `latents`: shape `[N, C, H, W]`, dtype `F32` (`F16` and `BF16` are accepted and widened
//!     to f32), row-major as safetensors always is;
//!   - `labels`: shape `[N]`, dtype `I64` or `I32`, one class index `>= 0` per latent.
//! - **`FILE.npy`** holding the latents, and **`labels.npy`** in the same directory holding the
//!   labels (the latents file may have any other name):
//!   - NPY format version 1.0, 2.0 or 3.0 (what `numpy.save` writes);
//!   - latents: dtype `'<f4'` (little-endian float32), `fortran_order: False` (C order),
//!     shape `(N, C, H, W)`;
//!   - labels: dtype `'<i8'` or `'<i4'`, C order, shape `(N,)`.
//!
//! For example: `np.save("z.npy", z.astype("<f4")); np.save("labels.npy", y.astype("<i8"))`.
//!
//! Values are loaded as stored: no VAE scaling factor is applied (scale them before saving if
//! the model expects it). Every value must be finite. A latents file with twice the model's
//! channel count is read as the encoder's `mean || logvar` moments (the first `C/2` channels
//! the mean, the rest the log-variance) and sampled once by [`super::fit_to_model`].

use std::path::Path;

use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::read::read_bytes;

use super::dataset::{Dataset, StoredTexts};
use super::safetensors_fields::{
    check_finite, check_labels_non_negative, check_labels_shape, floats, parse, read_labels, tensor,
};

/// Whether `path` names a latents file by its extension (`.safetensors` or `.npy`, any case).
pub fn is_latents_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("safetensors") || x.eq_ignore_ascii_case("npy"))
}

/// Loads a `.safetensors` or `.npy` latents file (see the module doc for the layout).
pub fn load(path: &Path) -> Result<Dataset, Diagnostic> {
    let file = path.display().to_string();
    let ext = path
        .extension()
        .map(|x| x.to_string_lossy().to_ascii_lowercase());
    let (shape, images, labels, texts) = match ext.as_deref() {
        Some("safetensors") => load_safetensors(path)?,
        Some("npy") => load_npy(path)?,
        _ => {
            return Err(Diagnostic::new(Location::File, "not a latents file")
                .expected("a file ending in .safetensors or .npy")
                .found(format!("extension {:?}", ext.unwrap_or_default()))
                .in_file(file))
        }
    };
    let [n, channels, height, width] = shape;
    Ok(Dataset {
        images,
        labels,
        n,
        channels,
        height,
        width,
        source: format!("latents:{file}"),
        texts,
        captions: None,
    })
}

/// Latents shape, values, labels (zeros when a text-conditioned file has none) and stored
/// texts, checked.
type Loaded = ([usize; 4], Vec<f32>, Vec<i64>, Option<StoredTexts>);

/// Reads `latents`, `labels` and any stored texts (see [`super::contexts`]) from a safetensors
/// file. Labels may be left out of a file that stores texts.
fn load_safetensors(path: &Path) -> Result<Loaded, Diagnostic> {
    let file = path.display().to_string();
    let bytes = read_file(path)?;
    let st = parse(&bytes, &file)?;
    let lat = tensor(&st, "latents", "[N, C, H, W] of F32, F16 or BF16", &file)?;
    let at = Location::Item("tensor `latents`".into());
    let shape = latents_shape(lat.shape(), &at, &file)?;
    let images = floats(&lat, &at, &file)?;
    check_finite(
        &images,
        shape[1] * shape[2] * shape[3],
        ("tensor `latents`", "latent"),
        &file,
    )?;
    let texts = super::contexts::read(&st, Some(shape[0]), &file)?;
    let labels = match texts.as_ref().and_then(|t| t.labels.clone()) {
        Some(labels) => labels,
        None if texts.is_some() => vec![0; shape[0]],
        None => read_labels(&st, shape[0], &file)?,
    };
    Ok((shape, images, labels, texts))
}

/// Reads a `.npy` latents file and its sibling `labels.npy`.
fn load_npy(path: &Path) -> Result<Loaded, Diagnostic> {
    let file = path.display().to_string();
    let labels_path = path.with_file_name("labels.npy");
    if path.file_name().is_some_and(|n| n == "labels.npy") {
        return Err(
            Diagnostic::new(Location::File, "the latents file is the labels file")
                .expected(
                    "latents in a .npy file not named labels.npy, labels in labels.npy beside it",
                )
                .found(file)
                .in_file(path.display().to_string()),
        );
    }
    let npy = crate::npy::read(
        path,
        &["<f4"],
        "dtype '<f4' (little-endian float32)",
        "save with `arr.astype('<f4')`",
    )?;
    let header = Location::Item("header".into());
    let shape = latents_shape(&npy.shape, &header, &file)?;
    let images: Vec<f32> = npy
        .data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    check_finite(
        &images,
        shape[1] * shape[2] * shape[3],
        ("data", "latent"),
        &file,
    )?;

    let labels_file = labels_path.display().to_string();
    if !labels_path.is_file() {
        return Err(
            Diagnostic::new(Location::File, "no labels.npy beside the latents")
                .expected(format!("the labels as {labels_file}"))
                .found("no such file")
                .in_file(&file),
        );
    }
    let lab = crate::npy::read(
        &labels_path,
        &["<i8", "<i4"],
        "dtype '<i8' or '<i4' (little-endian int64 / int32)",
        "save with `labels.astype('<i8')`",
    )?;
    let header = Location::Item("header".into());
    let labels: Vec<i64> = if lab.descr == "<i8" {
        lab.data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect()
    } else {
        lab.data
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
            .collect()
    };
    check_labels_shape(&lab.shape, shape[0], &header, &labels_file)?;
    check_labels_non_negative(&labels, "data", &labels_file)?;
    Ok((shape, images, labels, None))
}

/// Reads a whole file, as a diagnostic on failure.
fn read_file(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    read_bytes(path, "latents file", "a readable file")
}

/// Checks a latents shape is `[N, C, H, W]` with `C`, `H`, `W` > 0.
fn latents_shape(shape: &[usize], at: &Location, file: &str) -> Result<[usize; 4], Diagnostic> {
    match *shape {
        [n, c, h, w] if c > 0 && h > 0 && w > 0 => Ok([n, c, h, w]),
        _ => Err(Diagnostic::new(at.clone(), "latents have the wrong shape")
            .expected("shape [N, C, H, W] with C, H, W > 0")
            .found(format!("shape {shape:?}"))
            .in_file(file)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::temp_dir;
    use super::*;
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;

    /// The bytes of a `.npy` file (`version` 1 or 2).
    fn npy_bytes(descr: &str, shape: &[usize], fortran: bool, data: &[u8], version: u8) -> Vec<u8> {
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        let tuple = if shape.len() == 1 {
            format!("({},)", dims[0])
        } else {
            format!("({})", dims.join(", "))
        };
        let fortran = if fortran { "True" } else { "False" };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple}, }}");
        let prefix = if version == 1 { 10 } else { 12 };
        while (prefix + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY".to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn i64_bytes(v: &[i64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn i32_bytes(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// 2 latents of 2x1x2.
    const VALUES: [f32; 8] = [0.5, -1.5, 2.0, 3.0, -0.25, 0.0, 7.0, -8.0];

    fn write_safetensors(path: &Path, tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>) {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    }

    #[test]
    fn reads_npy_latents_and_labels() {
        for (version, label_descr, label_bytes) in [
            (1, "<i8", i64_bytes(&[3, 0])),
            (2, "<i4", i32_bytes(&[3, 0])),
        ] {
            let tmp = temp_dir("npy-ok");
            let z = tmp.path().join("z.npy");
            std::fs::write(
                &z,
                npy_bytes("<f4", &[2, 2, 1, 2], false, &f32_bytes(&VALUES), version),
            )
            .unwrap();
            std::fs::write(
                tmp.path().join("labels.npy"),
                npy_bytes(label_descr, &[2], false, &label_bytes, version),
            )
            .unwrap();
            assert!(is_latents_file(&z));
            let ds = load(&z).unwrap();
            assert_eq!((ds.n, ds.channels, ds.height, ds.width), (2, 2, 1, 2));
            assert_eq!(ds.images, VALUES);
            assert_eq!(ds.labels, vec![3, 0]);
            assert!(ds.is_latents());
        }
    }

    #[test]
    fn npy_bad_inputs_are_errors() {
        let tmp = temp_dir("npy-bad");
        let z = tmp.path().join("z.npy");
        let labels = tmp.path().join("labels.npy");
        let good = f32_bytes(&VALUES);

        std::fs::write(&z, npy_bytes("<f4", &[2, 2, 1, 2], false, &good, 1)).unwrap();
        let d = load(&z).unwrap_err();
        assert!(d.expected.as_deref().unwrap().contains("labels.npy"), "{d}");

        std::fs::write(&labels, npy_bytes("<f8", &[2], false, &[0; 16], 1)).unwrap();
        let d = load(&z).unwrap_err();
        assert_eq!(d.found.as_deref(), Some("dtype '<f8'"), "{d}");
        assert!(d.file.ends_with("labels.npy"));

        std::fs::write(
            &labels,
            npy_bytes("<i8", &[3], false, &i64_bytes(&[1, 2, 3]), 1),
        )
        .unwrap();
        let d = load(&z).unwrap_err();
        assert_eq!(d.found.as_deref(), Some("shape [3]"), "{d}");

        std::fs::write(
            &labels,
            npy_bytes("<i8", &[2], false, &i64_bytes(&[1, -2]), 1),
        )
        .unwrap();
        let d = load(&z).unwrap_err();
        assert_eq!(d.location, Location::Item("data, label 1".into()), "{d}");

        std::fs::write(
            &labels,
            npy_bytes("<i8", &[2], false, &i64_bytes(&[1, 2]), 1),
        )
        .unwrap();
        assert!(load(&z).is_ok());

        let d8: Vec<u8> = VALUES
            .iter()
            .flat_map(|x| (*x as f64).to_le_bytes())
            .collect();
        std::fs::write(&z, npy_bytes("<f8", &[2, 2, 1, 2], false, &d8, 1)).unwrap();
        let d = load(&z).unwrap_err();
        assert_eq!(d.found.as_deref(), Some("dtype '<f8'"), "{d}");
        assert!(d.file.ends_with("z.npy"));

        std::fs::write(&z, npy_bytes("<f4", &[2, 2, 1, 2], true, &good, 1)).unwrap();
        let d = load(&z).unwrap_err();
        assert!(d.message.contains("Fortran"), "{d}");

        std::fs::write(&z, npy_bytes("<f4", &[2, 4], false, &good, 1)).unwrap();
        let d = load(&z).unwrap_err();
        assert_eq!(d.found.as_deref(), Some("shape [2, 4]"), "{d}");

        let full = npy_bytes("<f4", &[2, 2, 1, 2], false, &good, 1);
        std::fs::write(&z, &full[..full.len() - 6]).unwrap();
        let d = load(&z).unwrap_err();
        assert_eq!(d.location, Location::Item("element 6".into()), "{d}");
        let mut long = full.clone();
        long.push(0);
        std::fs::write(&z, &long).unwrap();
        let d = load(&z).unwrap_err();
        assert_eq!(d.location, Location::Item("byte 160".into()), "{d}");
        std::fs::write(&z, &full[..40]).unwrap();
        assert!(load(&z).unwrap_err().message.contains("inside its header"));

        std::fs::write(&z, b"PK\x03\x04 not npy").unwrap();
        let d = load(&z).unwrap_err();
        assert_eq!(d.message, "not a .npy file", "{d}");

        let mut nan = VALUES;
        nan[5] = f32::NAN;
        std::fs::write(
            &z,
            npy_bytes("<f4", &[2, 2, 1, 2], false, &f32_bytes(&nan), 1),
        )
        .unwrap();
        let d = load(&z).unwrap_err();
        assert_eq!(d.location, Location::Item("data, latent 1".into()), "{d}");

        let d = load(&labels).unwrap_err();
        assert!(d.message.contains("labels file"), "{d}");
    }

    #[test]
    fn reads_safetensors_in_each_float_dtype() {
        let tmp = temp_dir("st-ok");
        let path = tmp.path().join("z.safetensors");
        let f16: Vec<u8> = [
            0x3800u16, 0xbe00, 0x4000, 0x4200, 0xb400, 0x0000, 0x4700, 0xc800,
        ]
        .iter()
        .flat_map(|h| h.to_le_bytes())
        .collect();
        let bf16: Vec<u8> = VALUES
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        for (dtype, data) in [
            (Dtype::F32, f32_bytes(&VALUES)),
            (Dtype::F16, f16),
            (Dtype::BF16, bf16),
        ] {
            write_safetensors(
                &path,
                vec![
                    ("latents", dtype, vec![2, 2, 1, 2], data),
                    ("labels", Dtype::I32, vec![2], i32_bytes(&[5, 1])),
                    ("extra", Dtype::U8, vec![1], vec![0]),
                ],
            );
            let ds = load(&path).unwrap();
            assert_eq!(
                (ds.n, ds.channels, ds.height, ds.width),
                (2, 2, 1, 2),
                "{dtype}"
            );
            assert_eq!(ds.images, VALUES, "{dtype}");
            assert_eq!(ds.labels, vec![5, 1]);
            assert_eq!(ds.num_classes(), 6);
        }
    }

    #[test]
    fn safetensors_bad_inputs_are_errors() {
        let tmp = temp_dir("st-bad");
        let path = tmp.path().join("z.safetensors");
        let lat = || ("latents", Dtype::F32, vec![2, 2, 1, 2], f32_bytes(&VALUES));

        write_safetensors(&path, vec![lat()]);
        let d = load(&path).unwrap_err();
        assert_eq!(d.location, Location::Item("tensor `labels`".into()), "{d}");
        assert_eq!(d.found.as_deref(), Some("tensors latents"));

        write_safetensors(
            &path,
            vec![("labels", Dtype::I64, vec![2], i64_bytes(&[0, 1]))],
        );
        let d = load(&path).unwrap_err();
        assert_eq!(d.location, Location::Item("tensor `latents`".into()), "{d}");

        write_safetensors(
            &path,
            vec![
                lat(),
                ("labels", Dtype::I64, vec![3], i64_bytes(&[0, 1, 2])),
            ],
        );
        let d = load(&path).unwrap_err();
        assert!(d.expected.as_deref().unwrap().contains("[2]"), "{d}");

        write_safetensors(
            &path,
            vec![
                lat(),
                ("labels", Dtype::F32, vec![2], f32_bytes(&[0.0, 1.0])),
            ],
        );
        let d = load(&path).unwrap_err();
        assert_eq!(d.found.as_deref(), Some("F32"), "{d}");

        let f64s: Vec<u8> = VALUES
            .iter()
            .flat_map(|v| (*v as f64).to_le_bytes())
            .collect();
        write_safetensors(
            &path,
            vec![
                ("latents", Dtype::F64, vec![2, 2, 1, 2], f64s),
                ("labels", Dtype::I64, vec![2], i64_bytes(&[0, 1])),
            ],
        );
        let d = load(&path).unwrap_err();
        assert_eq!(d.found.as_deref(), Some("F64"), "{d}");

        write_safetensors(
            &path,
            vec![
                ("latents", Dtype::F32, vec![8], f32_bytes(&VALUES)),
                ("labels", Dtype::I64, vec![2], i64_bytes(&[0, 1])),
            ],
        );
        let d = load(&path).unwrap_err();
        assert_eq!(d.found.as_deref(), Some("shape [8]"), "{d}");

        std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
        let d = load(&path).unwrap_err();
        assert_eq!(d.location, Location::Item("header".into()), "{d}");
        assert_eq!(d.file, path.display().to_string());

        let d = load(&tmp.path().join("missing.safetensors")).unwrap_err();
        assert!(d.message.contains("cannot read"), "{d}");
    }
}
