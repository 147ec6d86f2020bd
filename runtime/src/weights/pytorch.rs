//! PyTorch `.pt`/`.pth` files (zip or legacy pickle) read without Python, through burn-store's
//! reader: the one module that uses burn-store.

use std::collections::BTreeMap;
use std::path::Path;

use burn_store::pytorch::PytorchReader;
use tread_compiler::diag::{Diagnostic, Location};

use crate::checkpoint::HostTensor;

/// The keys a training checkpoint keeps its weights under, in the order tried when the file's
/// tensors are nested: EMA weights first (what DiT samples and fine-tunes from).
const NESTED: [&str; 4] = ["ema", "model", "state_dict", "module"];

/// Every tensor of a PyTorch file as f32 (floats widened, integers converted), by its dotted
/// name; a checkpoint whose tensors sit under `ema`/`model`/`state_dict`/`module` is read from
/// the first of those present, and the returned note says which.
pub fn read(path: &Path) -> Result<(BTreeMap<String, HostTensor>, Option<String>), Diagnostic> {
    let file = path.display().to_string();
    let unreadable = |e: String| {
        Diagnostic::new(Location::File, "cannot read the PyTorch file")
            .expected("a state dict saved by torch.save (.pt/.pth, zip or legacy format)")
            .found(e)
            .in_file(&file)
    };
    let reader = PytorchReader::new(path).map_err(|e| unreadable(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, snap) in reader.tensors() {
        let data = snap.to_data().map_err(|e| {
            Diagnostic::new(
                Location::Item(format!("tensor `{name}`")),
                "cannot read the tensor's data",
            )
            .found(e.to_string())
            .in_file(&file)
        })?;
        let values = data.convert::<f32>().into_vec::<f32>().map_err(|e| {
            Diagnostic::new(
                Location::Item(format!("tensor `{name}`")),
                "the tensor's values cannot be read as numbers",
            )
            .found(format!("{e:?}"))
            .in_file(&file)
        })?;
        tensors.insert(
            name.clone(),
            HostTensor {
                shape: snap.shape.to_vec(),
                data: values,
            },
        );
    }
    Ok(unnest(tensors))
}

/// The tensors under the first of [`NESTED`]'s keys when every tensor is nested under some
/// key, else all of them.
fn unnest(tensors: BTreeMap<String, HostTensor>) -> (BTreeMap<String, HostTensor>, Option<String>) {
    for key in NESTED {
        let prefix = format!("{key}.");
        if tensors.keys().any(|k| k.starts_with(&prefix)) {
            let inner = tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
                .collect();
            return (
                inner,
                Some(format!(
                    "read the weights under `{key}` (a training checkpoint)"
                )),
            );
        }
    }
    (tensors, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: f32) -> HostTensor {
        HostTensor {
            shape: vec![1],
            data: vec![v],
        }
    }

    #[test]
    fn nested_checkpoints_give_their_ema_weights() {
        let flat: BTreeMap<String, HostTensor> =
            [("a.weight".to_string(), t(1.0))].into_iter().collect();
        assert_eq!(unnest(flat.clone()), (flat, None));
        let nested: BTreeMap<String, HostTensor> = [
            ("model.a.weight".to_string(), t(1.0)),
            ("ema.a.weight".to_string(), t(2.0)),
            ("opt.state.0.exp_avg".to_string(), t(3.0)),
        ]
        .into_iter()
        .collect();
        let (inner, note) = unnest(nested);
        assert_eq!(inner.len(), 1);
        assert_eq!(inner["a.weight"], t(2.0));
        assert!(note.unwrap().contains("`ema`"));
    }

    #[test]
    fn the_official_layout_fixture_reads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let (tensors, note) =
            read(&root.join("tests/fixtures/dit-official/state_dict.pt")).unwrap();
        assert_eq!(note, None);
        assert_eq!(tensors["x_embedder.proj.weight"].shape, [32, 4, 2, 2]);
        assert_eq!(tensors["blocks.1.attn.qkv.weight"].shape, [96, 32]);
        let (io, _) = read(&root.join("tests/fixtures/dit-official/forward.pt")).unwrap();
        assert_eq!(io["y"].data, [3.0, 10.0, 7.0]);
        let bad = root.join("tests/fixtures/dit-official/README.md");
        let e = read(&bad).unwrap_err().to_string();
        assert!(e.contains("README.md") && e.contains("PyTorch"), "{e}");
    }
}
