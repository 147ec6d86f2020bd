//! Checkpoint files: named f32 tensors plus string metadata in one safetensors file, written
//! atomically (temporary file in the same folder, fsync, rename), read back with every mismatch
//! reported as a diagnostic.
//!
//! Layout: tensors `model/<param>`, `ema/<param>`, `adam_m/<param>`, `adam_v/<param>`;
//! metadata `format` = `treadc.checkpoint/1`, `step`, `seed`, `model_json` (the model file's
//! text), `model_file`, `routes` (JSON list of route flags), `graph` (the routed graph's text
//! dump), `train` (the run's settings as JSON).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tread_compiler::diag::{Diagnostic, Location};

/// The format tag.
pub const CHECKPOINT_FORMAT: &str = "treadc.checkpoint/1";

/// A host tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// A checkpoint in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// Named tensors.
    pub tensors: BTreeMap<String, HostTensor>,
    /// String metadata.
    pub meta: BTreeMap<String, String>,
}

fn err(path: &Path, at: &str, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::new(Location::Item(at.to_string()), msg).in_file(path.display().to_string())
}

impl Checkpoint {
    /// A metadata entry or an error naming it.
    pub fn meta(&self, key: &str, path: &Path) -> Result<&str, Diagnostic> {
        self.meta.get(key).map(String::as_str).ok_or_else(|| {
            err(
                path,
                "metadata",
                format!("the checkpoint has no `{key}` entry"),
            )
            .expected(format!("a treadc checkpoint with `{key}`"))
            .found(format!("keys {:?}", self.meta.keys().collect::<Vec<_>>()))
        })
    }

    /// Writes atomically: a crash mid-write leaves the previous file intact.
    pub fn save(&self, path: &Path) -> Result<(), Diagnostic> {
        let bytes: Vec<Vec<u8>> = self
            .tensors
            .values()
            .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let mut views = Vec::with_capacity(self.tensors.len());
        for ((name, t), b) in self.tensors.iter().zip(&bytes) {
            let view = TensorView::new(Dtype::F32, t.shape.clone(), b).map_err(|e| {
                err(
                    path,
                    &format!("tensor `{name}`"),
                    format!("cannot encode: {e}"),
                )
            })?;
            views.push((name.clone(), view));
        }
        let mut meta: HashMap<String, String> = self.meta.clone().into_iter().collect();
        meta.insert("format".into(), CHECKPOINT_FORMAT.into());
        let encoded = safetensors::serialize(views, Some(meta))
            .map_err(|e| err(path, "file", format!("cannot encode the checkpoint: {e}")))?;
        write_atomic(path, &encoded)
    }

    /// Reads and checks the format tag.
    pub fn load(path: &Path) -> Result<Self, Diagnostic> {
        let bytes = std::fs::read(path).map_err(|e| {
            err(path, "file", "cannot read the checkpoint")
                .expected("a readable treadc checkpoint (.safetensors)")
                .found(e.to_string())
        })?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| {
            err(path, "header", "not a safetensors file, or a corrupt one")
                .expected("a treadc checkpoint (.safetensors)")
                .found(e.to_string())
        })?;
        let meta: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
            return Err(err(path, "metadata `format`", "not a treadc checkpoint")
                .expected(CHECKPOINT_FORMAT)
                .found(
                    meta.get("format")
                        .cloned()
                        .unwrap_or_else(|| "no format tag".into()),
                ));
        }
        let st = SafeTensors::deserialize(&bytes).map_err(|e| {
            err(path, "tensors", "corrupt tensor data")
                .expected("a complete safetensors file")
                .found(e.to_string())
        })?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(err(path, &format!("tensor `{name}`"), "wrong element type")
                    .expected("F32")
                    .found(format!("{:?}", view.dtype())));
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.insert(
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(Checkpoint { tensors, meta })
    }
}

/// The atomic writer (temporary file, fsync, rename), shared with the compiler's exporter.
pub use tread_compiler::atomic::write_atomic;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_corruption() {
        let mut c = Checkpoint::default();
        c.tensors.insert(
            "model/a".into(),
            HostTensor {
                shape: vec![2, 2],
                data: vec![1.0, -2.0, 3.5, f32::MIN_POSITIVE],
            },
        );
        c.meta.insert("step".into(), "7".into());
        let dir = tempfile::tempdir().unwrap();
        let tmp = |name: &str| dir.path().join(name);
        let p = tmp("rt.safetensors");
        c.save(&p).unwrap();
        let back = Checkpoint::load(&p).unwrap();
        assert_eq!(back.tensors, c.tensors);
        assert_eq!(back.meta["step"], "7");
        assert_eq!(back.meta["format"], CHECKPOINT_FORMAT);
        let bytes = std::fs::read(&p).unwrap();
        let cut = tmp("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        let e = Checkpoint::load(&cut).unwrap_err();
        assert!(e.file.ends_with("cut.safetensors"), "{e}");
        std::fs::write(&cut, b"garbage").unwrap();
        assert!(Checkpoint::load(&cut).is_err());
        assert!(Checkpoint::load(&tmp("missing.safetensors")).is_err());
    }
}
