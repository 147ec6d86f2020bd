//! The shipped digit classifier's weight file: `data/classifier/digits-cnn.safetensors`, the
//! tensors of [`crate::lower::classifier::LAYOUT`] under `classifier/<name>` plus provenance
//! metadata (the command, seed, steps and held-out accuracy that produced it), written
//! atomically like a checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use tread_compiler::diag::{Diagnostic, Location};

use crate::checkpoint::{Checkpoint, HostTensor};
use crate::lower::classifier::LAYOUT;

/// The file, relative to the data folder (the parent of `data/mnist`).
pub const CLASSIFIER_FILE: &str = "classifier/digits-cnn.safetensors";

/// Metadata `kind` that marks a classifier file (a training checkpoint is refused).
pub const CLASSIFIER_KIND: &str = "treadc.digit-classifier/1";

/// Writes the classifier's parameters (in [`LAYOUT`] order) with `provenance` metadata.
pub fn save(
    path: &Path,
    params: &[Vec<f32>],
    provenance: BTreeMap<String, String>,
) -> Result<(), Diagnostic> {
    let mut ck = Checkpoint {
        meta: provenance,
        ..Checkpoint::default()
    };
    ck.meta.insert("kind".into(), CLASSIFIER_KIND.into());
    for ((name, shape, _), data) in LAYOUT.iter().zip(params) {
        ck.tensors.insert(
            format!("classifier/{name}"),
            HostTensor {
                shape: shape.to_vec(),
                data: data.clone(),
            },
        );
    }
    ck.save(path)
}

/// A classifier file read back.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierFile {
    /// Parameters in [`LAYOUT`] order.
    pub params: Vec<Vec<f32>>,
    /// Metadata: `kind` and the provenance written by [`save`].
    pub meta: BTreeMap<String, String>,
}

/// Reads the classifier's parameters and metadata, checking every name and shape.
pub fn load(path: &Path) -> Result<ClassifierFile, Diagnostic> {
    let ck = Checkpoint::load(path)?;
    let at = |what: String| Location::Item(what);
    let file = path.display().to_string();
    if ck.meta.get("kind").map(String::as_str) != Some(CLASSIFIER_KIND) {
        return Err(
            Diagnostic::new(at("metadata `kind`".into()), "not a digit-classifier file")
                .expected(CLASSIFIER_KIND)
                .found(ck.meta.get("kind").cloned().unwrap_or("no kind".into()))
                .in_file(file),
        );
    }
    let mut params = Vec::with_capacity(LAYOUT.len());
    for (name, shape, _) in LAYOUT {
        let key = format!("classifier/{name}");
        match ck.tensors.get(&key) {
            Some(t) if t.shape == shape => params.push(t.data.clone()),
            found => {
                return Err(
                    Diagnostic::new(at(format!("tensor `{key}`")), "missing or misshapen")
                        .expected(format!("shape {shape:?}"))
                        .found(found.map_or("no such tensor".into(), |t| format!("{:?}", t.shape)))
                        .in_file(file),
                )
            }
        }
    }
    Ok(ClassifierFile {
        params,
        meta: ck.meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::classifier::init;

    #[test]
    fn save_then_load_round_trips_and_a_wrong_kind_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let p = dir.join("c.safetensors");
        let params = init(3);
        let meta = BTreeMap::from([("seed".to_string(), "3".to_string())]);
        save(&p, &params, meta).unwrap();
        let back = load(&p).unwrap();
        assert_eq!(back.params, params);
        assert_eq!(back.meta["seed"], "3");
        let mut ck = Checkpoint::load(&p).unwrap();
        ck.meta.remove("kind");
        ck.save(&p).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("not a digit-classifier file"), "{e}");
    }
}
