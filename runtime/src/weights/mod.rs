//! `--init-from FILE`: a model's starting weights from a file instead of the seed — a treadc
//! run or checkpoint (its EMA weights), a `.safetensors` file under treadc's parameter names or
//! the official DiT names, or a PyTorch state dict (`.pt`/`.pth`, read without Python).
//!
//! Every parameter of the model must be in the file with its shape, and every tensor of the file
//! must be a parameter: a missing, extra or misshapen tensor is bad input naming it (exit 2),
//! never a silent partial load.

pub mod official;
pub mod pt_writer;
pub mod pytorch;

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::SafeTensors;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::ir::Graph;
use tread_compiler::params::param_specs;
use tread_compiler::read::read_bytes;

use crate::checkpoint::{Checkpoint, HostTensor, CHECKPOINT_FORMAT};
use crate::run_folder::RunFolder;

/// Starting weights read for a model.
#[derive(Debug, Clone)]
pub struct InitWeights {
    /// One tensor per parameter, in `param_specs` order.
    pub values: Vec<Vec<f32>>,
    /// What was adapted on the way (nested checkpoint, official names, learned sigma cut).
    pub notes: Vec<String>,
}

/// Reads `path` and fits it to `g`'s parameters (see the module doc). `path` may be a run
/// folder (its checkpoint).
pub fn load(path: &Path, g: &Graph) -> Result<InitWeights, Diagnostic> {
    let path = if path.is_dir() {
        RunFolder::checkpoint_of(path)
    } else {
        path.to_path_buf()
    };
    let file = path.display().to_string();
    let (tensors, mut notes) = read(&path)?;
    let specs = param_specs(g);
    let want: BTreeMap<String, Vec<usize>> = specs
        .iter()
        .map(|s| (s.name.clone(), s.shape.clone()))
        .collect();
    let tensors = if official::is_official(tensors.keys()) {
        notes.push("mapped the official DiT names onto the model's parameters".into());
        let (mapped, more) = official::to_treadc(tensors, g, &want, &file)?;
        notes.extend(more);
        mapped
    } else {
        tensors
    };
    let at = |name: &str| Location::Item(format!("tensor `{name}`"));
    if let Some(extra) = tensors.keys().find(|k| !want.contains_key(*k)) {
        return Err(
            Diagnostic::new(at(extra), "the file has a tensor the model does not")
                .expected(format!(
                    "only the model's {} parameters (treadc or official DiT names)",
                    want.len()
                ))
                .found(format!("`{extra}`, shape {:?}", tensors[extra].shape))
                .in_file(&file),
        );
    }
    let mut values = Vec::with_capacity(specs.len());
    for s in &specs {
        let t = tensors.get(&s.name).ok_or_else(|| {
            Diagnostic::new(at(&s.name), "the model's parameter is not in the file")
                .expected(format!("a tensor `{}` of shape {:?}", s.name, s.shape))
                .found("no such tensor")
                .in_file(&file)
        })?;
        if t.shape != s.shape {
            return Err(
                Diagnostic::new(at(&s.name), "the tensor's shape does not fit the model")
                    .expected(format!("shape {:?}", s.shape))
                    .found(format!("shape {:?}", t.shape))
                    .in_file(&file),
            );
        }
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(
                Diagnostic::new(at(&s.name), "the tensor holds a non-finite value")
                    .expected("finite weights")
                    .found(format!("{} at element {i}", t.data[i]))
                    .in_file(&file),
            );
        }
        values.push(t.data.clone());
    }
    Ok(InitWeights { values, notes })
}

/// The kind of state-dict file `write_official` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateDictFile {
    /// `.safetensors` (`safetensors.torch.load_file`).
    Safetensors,
    /// PyTorch's zip `.pt` (`torch.load`, `weights_only=True` allowed).
    Pt,
}

impl StateDictFile {
    /// The `--format` value that asks for it.
    pub fn format_flag(self) -> &'static str {
        match self {
            StateDictFile::Safetensors => "safetensors-official",
            StateDictFile::Pt => "pt-official",
        }
    }
}

/// Writes a DiT's weights (`tensors` by treadc name, for graph `g`, read from `source`) as a
/// state dict under the official DiT names (see [`official::from_treadc`]), atomically; returns
/// the number of tensors written. A model without the DiT presets' parameters is bad input
/// naming `source`.
pub fn write_official(
    path: &Path,
    kind: StateDictFile,
    source: &str,
    g: &Graph,
    tensors: &std::collections::HashMap<String, Vec<f32>>,
) -> Result<usize, Diagnostic> {
    let params: BTreeMap<String, HostTensor> = param_specs(g)
        .into_iter()
        .filter_map(|s| {
            let data = tensors.get(&s.name)?.clone();
            Some((
                s.name,
                HostTensor {
                    shape: s.shape,
                    data,
                },
            ))
        })
        .collect();
    let official = official::from_treadc(&params, g).map_err(|m| {
        Diagnostic::new(
            Location::Item(format!("--format {}", kind.format_flag())),
            m,
        )
        .expected("a model with the DiT presets' parameters")
        .in_file(source)
    })?;
    let n = official.len();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = official
        .into_iter()
        .map(|(k, t)| (k, t.shape, t.data))
        .collect();
    match kind {
        StateDictFile::Safetensors => write_safetensors(path, &tensors, "pt")?,
        StateDictFile::Pt => pt_writer::write_pt(path, &tensors)?,
    }
    Ok(n)
}

/// Writes named f32 tensors as one `.safetensors` file (metadata `format` = `format`),
/// atomically: the state dicts `export --format safetensors-official` and `treadc import`
/// hand out, which `--init-from` and `safetensors.torch.load_file` read.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    format: &str,
) -> Result<(), Diagnostic> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, shape, data) in tensors {
        // f32 is stored little-endian, as on every target treadc builds for.
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map_err(|e| {
                    Diagnostic::new(Location::Item(format!("tensor `{name}`")), e.to_string())
                        .in_file(path.display().to_string())
                })?;
        views.push((name.clone(), view));
    }
    let meta = std::collections::HashMap::from([("format".to_string(), format.to_string())]);
    tread_compiler::atomic::write_atomic_with(path, |tmp| {
        safetensors::serialize_to_file(views, Some(meta), tmp).map_err(std::io::Error::other)
    })
}

/// The tensors of a weight file by name, and notes on how they were found.
fn read(path: &Path) -> Result<(BTreeMap<String, HostTensor>, Vec<String>), Diagnostic> {
    let file = path.display().to_string();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pt" | "pth" | "bin" | "ckpt" => {
            let (tensors, note) = pytorch::read(path)?;
            Ok((tensors, note.into_iter().collect()))
        }
        "safetensors" => {
            let bytes = read_bytes(path, "weights file", "a readable .safetensors file")?;
            let st = crate::data::safetensors_fields::parse(&bytes, &file)?;
            let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| {
                Diagnostic::new(
                    Location::Item("header".into()),
                    "corrupt safetensors header",
                )
                .found(e.to_string())
                .in_file(&file)
            })?;
            let is_checkpoint = header
                .metadata()
                .as_ref()
                .and_then(|m| m.get("format"))
                .is_some_and(|f| f == CHECKPOINT_FORMAT);
            if is_checkpoint {
                return from_checkpoint(path);
            }
            let mut tensors = BTreeMap::new();
            for (name, view) in st.tensors() {
                let at = Location::Item(format!("tensor `{name}`"));
                let data = crate::data::safetensors_fields::floats(&view, &at, &file)?;
                let shape = view.shape().to_vec();
                tensors.insert(name, HostTensor { shape, data });
            }
            Ok((tensors, Vec::new()))
        }
        _ => Err(Diagnostic::new(Location::File, "unknown weights file type")
            .expected("a run folder, a .safetensors file, or a PyTorch .pt/.pth/.bin/.ckpt")
            .found(format!("extension `{ext}`"))
            .in_file(&file)),
    }
}

/// A treadc checkpoint's EMA weights under their parameter names.
fn from_checkpoint(path: &Path) -> Result<(BTreeMap<String, HostTensor>, Vec<String>), Diagnostic> {
    let ck = Checkpoint::load(path)?;
    let step = ck.meta.get("step").cloned().unwrap_or_else(|| "?".into());
    let tensors = ck
        .tensors
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("ema/").map(|k| (k.to_string(), v)))
        .collect();
    Ok((
        tensors,
        vec![format!("the checkpoint's EMA weights at step {step}")],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::reference::dense_output;
    use tread_compiler::compile::{compile_file, CompileOptions};
    use tread_compiler::ir::InputRole;
    use tread_compiler::passes::strip_routes;

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// The PyTorch DiT's output on its recorded inputs equals the treadc model's with the
    /// imported weights (the first C of its 2C learned-sigma channels).
    #[test]
    fn an_official_dit_state_dict_computes_the_same_function() {
        let c = compile_file(
            &root().join("tests/models/dit-official-tiny.json"),
            &CompileOptions::default(),
        )
        .unwrap();
        let dense = strip_routes(&c.routed).unwrap();
        let fixture = root().join("tests/fixtures/dit-official");
        let w = load(&fixture.join("state_dict.pt"), &dense).unwrap();
        assert!(
            w.notes.iter().any(|n| n.contains("learned sigma")),
            "{:?}",
            w.notes
        );
        let (io, _) = pytorch::read(&fixture.join("forward.pt")).unwrap();
        let f32s = |k: &str| io[k].data.clone();
        assert!(
            io.contains_key("out_f64"),
            "regenerate the fixture (tools/make_dit_fixture.py)"
        );
        let inputs = [
            (
                InputRole::Image,
                tread_onnx::tract::HostValue::F32(f32s("x"), vec![3, 4, 8, 8]),
            ),
            (
                InputRole::NoiseLevel,
                tread_onnx::tract::HostValue::F32(f32s("t"), vec![3]),
            ),
            (
                InputRole::Label,
                tread_onnx::tract::HostValue::I64(
                    io["y"].data.iter().map(|&v| v as i64).collect(),
                    vec![3],
                ),
            ),
        ];
        let got = dense_output(
            &dense,
            c.model.training.objective,
            &w.values,
            &inputs,
            false,
        )
        .unwrap();
        // Both float32 runs against the float64 output (first C of the 2C channels).
        let exact = &io["out_f64"];
        assert_eq!(exact.shape, [3, 8, 8, 8]);
        let worst = |out: &dyn Fn(usize, usize) -> f32| {
            let mut w = 0.0f32;
            for n in 0..3 {
                for i in 0..4 * 64 {
                    w = w.max((out(n, i) - exact.data[n * 512 + i]).abs());
                }
            }
            w
        };
        let ours = worst(&|n, i| got[n * 256 + i]);
        let torch = worst(&|n, i| io["out"].data[n * 512 + i]);
        eprintln!("max |difference| from the float64 output: treadc {ours:e}, PyTorch {torch:e}");
        assert!(ours < 1e-5, "treadc's output differs by {ours:e}");
    }

    /// `treadc import` of torch's ONNX exports of the same DiT (TorchScript and dynamo): the
    /// imported model (learned sigma kept, 2C channels) computes PyTorch's function on all 8
    /// channels.
    #[test]
    fn imported_torch_exports_compute_pytorchs_function() {
        let fixture = root().join("tests/fixtures/dit-official");
        for file in ["model.onnx", "model-dynamo.onnx"] {
            let m = tread_onnx::import::import(&fixture.join(file), "dit").unwrap();
            let tmp = tempfile::tempdir().unwrap();
            let weights = tmp.path().join("weights.safetensors");
            write_safetensors(&weights, &m.weights, "pt").unwrap();
            let text = serde_json::to_string(&m.model).unwrap();
            let c = crate::model::compile_model(&text, "model.json", &[]).unwrap();
            let dense = strip_routes(&c.routed).unwrap();
            let w = load(&weights, &dense).unwrap();
            let (io, _) = pytorch::read(&fixture.join("forward.pt")).unwrap();
            let f32s = |k: &str| io[k].data.clone();
            let inputs = [
                (
                    InputRole::Image,
                    tread_onnx::tract::HostValue::F32(f32s("x"), vec![3, 4, 8, 8]),
                ),
                (
                    InputRole::NoiseLevel,
                    tread_onnx::tract::HostValue::F32(f32s("t"), vec![3]),
                ),
                (
                    InputRole::Label,
                    tread_onnx::tract::HostValue::I64(
                        io["y"].data.iter().map(|&v| v as i64).collect(),
                        vec![3],
                    ),
                ),
            ];
            let got = dense_output(
                &dense,
                c.model.training.objective,
                &w.values,
                &inputs,
                false,
            )
            .unwrap();
            let exact = &io["out_f64"].data;
            assert_eq!(got.len(), exact.len());
            let worst = got
                .iter()
                .zip(exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            eprintln!("{file} imported vs PyTorch float64: max |difference| {worst:e}");
            assert!(
                worst < 1e-5,
                "{file}: the imported model differs by {worst:e}"
            );
        }
    }
}
