//! Encoding and writing an ONNX model: one `.onnx` file, or — when the weights pass protobuf's
//! 2 GiB message limit (DiT-XL/2 in fp32 is 2.7 GB) or when asked — the graph in `.onnx` and the
//! weights in `<name>.onnx.data` as ONNX external data (relative location, offset, length).
//! Both files are written atomically, the data first, so a crash never leaves a model file that
//! points at missing data. Also reads a model back, with clear errors for corrupt files.

use std::path::Path;

use prost::Message;
use tract_onnx::pb;

use tread_compiler::atomic::write_atomic;
use tread_compiler::diag::{Diagnostic, Location};
use tread_compiler::read::read_bytes;

/// Where the weights go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalData {
    /// Inside the `.onnx` unless the file would pass [`INLINE_LIMIT`].
    Auto,
    /// Always in a `.onnx.data` file beside the model.
    Always,
}

/// The largest model written as a single file: protobuf messages are limited to 2 GiB; the
/// margin leaves room for the graph itself.
pub const INLINE_LIMIT: usize = 2_000_000_000;

/// Initialisers smaller than this stay inline even with external data (shape constants).
const EXTERNAL_THRESHOLD: usize = 1024;

/// Offsets in the data file are multiples of this (page-friendly for memory mapping).
const ALIGN: usize = 64;

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    /// Bytes of the `.onnx` file.
    pub model_bytes: usize,
    /// Bytes of the external data file, if one was written.
    pub data_bytes: Option<usize>,
}

/// Total bytes of initialiser data.
pub fn weight_bytes(m: &pb::ModelProto) -> usize {
    m.graph
        .as_ref()
        .map_or(0, |g| g.initializer.iter().map(|t| t.raw_data.len()).sum())
}

/// Writes `model` to `path` (atomically), moving weights to external data when needed (then
/// `model` keeps only the references, as written).
pub fn write_model(
    model: &mut pb::ModelProto,
    path: &Path,
    external: ExternalData,
) -> Result<Written, Diagnostic> {
    let go_external = external == ExternalData::Always || weight_bytes(model) > INLINE_LIMIT;
    let mut data_bytes = None;
    if go_external {
        let file_name = path
            .file_name()
            .map(|n| format!("{}.data", n.to_string_lossy()))
            .unwrap_or_else(|| "model.onnx.data".into());
        let mut data: Vec<u8> = vec![];
        if let Some(g) = model.graph.as_mut() {
            for t in g.initializer.iter_mut() {
                if t.raw_data.len() < EXTERNAL_THRESHOLD {
                    continue;
                }
                let pad = (ALIGN - data.len() % ALIGN) % ALIGN;
                data.extend(std::iter::repeat_n(0u8, pad));
                let offset = data.len();
                data.extend_from_slice(&t.raw_data);
                let length = t.raw_data.len();
                t.raw_data = vec![];
                t.data_location = Some(pb::tensor_proto::DataLocation::External as i32);
                t.external_data = [
                    ("location", file_name.clone()),
                    ("offset", offset.to_string()),
                    ("length", length.to_string()),
                ]
                .into_iter()
                .map(|(k, v)| pb::StringStringEntryProto {
                    key: k.into(),
                    value: v,
                })
                .collect();
            }
        }
        write_atomic(&path.with_file_name(&file_name), &data)?;
        data_bytes = Some(data.len());
    }
    let bytes = model.encode_to_vec();
    write_atomic(path, &bytes)?;
    Ok(Written {
        model_bytes: bytes.len(),
        data_bytes,
    })
}

/// Reads and decodes an ONNX model file (the graph; external data stays where it is).
pub fn read_model(path: &Path) -> Result<pb::ModelProto, Diagnostic> {
    let file = path.display().to_string();
    let bytes = read_bytes(path, "ONNX file", "a readable .onnx file")?;
    let m = pb::ModelProto::decode(bytes.as_slice()).map_err(|e| {
        Diagnostic::new(Location::File, "not an ONNX model, or a corrupt one")
            .expected("an ONNX ModelProto (protobuf)")
            .found(format!("{e} ({} bytes)", bytes.len()))
            .in_file(file.clone())
    })?;
    if m.graph.is_none() {
        return Err(
            Diagnostic::new(Location::File, "the ONNX file has no graph")
                .expected("an ONNX model with a graph")
                .found("an empty ModelProto")
                .in_file(file),
        );
    }
    Ok(m)
}

/// A `treadc.*` metadata entry of a model read back.
pub fn metadata<'m>(m: &'m pb::ModelProto, key: &str) -> Option<&'m str> {
    let key = crate::keys::full(key);
    m.metadata_props
        .iter()
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
}
