//! The ONNX graph as the importer reads it: nodes in file order (ONNX requires topological
//! order), who produces and who consumes each value, and tract's facts (shapes with the batch
//! symbolic, folded constants) for every value.

use std::collections::HashMap;

use crate::pb;
use crate::tract::{FactDim, FactValue, ValueFacts};

/// A node's name and metadata, decoded apart from tract's schema, which predates
/// `NodeProto.metadata_props` (ONNX IR 10): torch's dynamo exporter keeps the module path
/// there (`pkg.torch.onnx.name_scopes`) and names the nodes after aten ops.
#[derive(Clone, PartialEq, prost::Message)]
struct ScopedNode {
    #[prost(string, tag = "3")]
    name: String,
    #[prost(message, repeated, tag = "9")]
    metadata_props: Vec<pb::StringStringEntryProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopedGraph {
    #[prost(message, repeated, tag = "1")]
    node: Vec<ScopedNode>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopedModel {
    #[prost(message, optional, tag = "7")]
    graph: Option<ScopedGraph>,
}

/// `['', 'blocks.0', 'blocks.0.attn', 'view_1']` → `/blocks.0/attn/view_1`: the dynamo
/// exporter's module scopes as the TorchScript exporter's node path.
pub fn scopes_to_path(scopes: &str) -> Option<String> {
    let inner = scopes.trim().strip_prefix('[')?.strip_suffix(']')?;
    let items: Vec<&str> = inner
        .split(',')
        .map(|s| s.trim().trim_matches('\'').trim_matches('"'))
        .collect();
    let (op, modules) = items.split_last()?;
    let mut segs = vec![];
    let mut prev = "";
    for m in modules.iter().filter(|m| !m.is_empty()) {
        segs.push(m.strip_prefix(&format!("{prev}.")).unwrap_or(m).to_string());
        prev = m;
    }
    segs.push(op.to_string());
    Some(format!("/{}", segs.join("/")))
}

/// Each node's module path from torch's dynamo metadata (in node order), where present.
pub fn dynamo_paths(bytes: &[u8]) -> Vec<Option<String>> {
    use prost::Message;
    let Ok(m) = ScopedModel::decode(bytes) else {
        return vec![];
    };
    m.graph
        .map(|g| g.node)
        .unwrap_or_default()
        .iter()
        .map(|n| {
            n.metadata_props
                .iter()
                .find(|e| e.key == "pkg.torch.onnx.name_scopes")
                .and_then(|e| scopes_to_path(&e.value))
        })
        .collect()
}

/// One ONNX node.
#[derive(Debug, Clone)]
pub struct OnnxNode {
    /// The node's name (`/blocks.0/attn/qkv/MatMul`), or its first output when unnamed.
    pub name: String,
    /// Its op type (`MatMul`).
    pub op: String,
    /// Input value names; an empty name is an absent optional input.
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    attrs: Vec<pb::AttributeProto>,
}

impl OnnxNode {
    /// An integer attribute.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.attrs.iter().find(|a| a.name == name).map(|a| a.i)
    }

    /// A float attribute.
    pub fn float(&self, name: &str) -> Option<f32> {
        self.attrs.iter().find(|a| a.name == name).map(|a| a.f)
    }

    /// An integer-list attribute.
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.ints.clone())
    }

    /// A string attribute.
    pub fn string(&self, name: &str) -> Option<String> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }
}

/// A graph input as declared: name, element type and rank.
#[derive(Debug, Clone)]
pub struct GraphInput {
    /// The input's name.
    pub name: String,
    /// Whether it holds integers (labels, token ids).
    pub integer: bool,
}

/// The whole graph with its facts.
pub struct Source {
    /// Nodes in file (topological) order.
    pub nodes: Vec<OnnxNode>,
    /// The graph inputs that are not initialisers.
    pub inputs: Vec<GraphInput>,
    /// The graph outputs' value names.
    pub outputs: Vec<String>,
    /// tract's facts by value name.
    pub facts: HashMap<String, ValueFacts>,
    /// The producing node of each value.
    pub producer: HashMap<String, usize>,
    /// The consuming nodes of each value (a node once per use).
    pub consumers: HashMap<String, Vec<usize>>,
    /// The model's `metadata_props`.
    pub metadata: Vec<(String, String)>,
    /// The initialisers' values, read from the file.
    inits: HashMap<String, FactValue>,
}

fn decode(t: &pb::TensorProto, raw: &[u8]) -> Result<FactValue, String> {
    let shape: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let n: usize = shape.iter().product();
    let le = |k: usize| raw.chunks_exact(k);
    let floats: Vec<f32> = match t.data_type {
        1 if !raw.is_empty() && raw.len().is_multiple_of(4) => bytemuck::pod_collect_to_vec(raw),
        1 => t.float_data.clone(),
        11 if !raw.is_empty() => le(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        11 => t.double_data.iter().map(|&v| v as f32).collect(),
        10 | 16 => {
            let bits: Vec<u16> = if raw.is_empty() {
                t.int32_data.iter().map(|&v| v as u16).collect()
            } else {
                le(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()
            };
            bits.into_iter()
                .map(|h| {
                    if t.data_type == 16 {
                        f32::from_bits((h as u32) << 16)
                    } else {
                        half_to_f32(h)
                    }
                })
                .collect()
        }
        6 | 7 => {
            let ints: Vec<i64> = match (t.data_type, raw.is_empty()) {
                (7, false) => le(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect(),
                (6, false) => le(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                    .collect(),
                (7, true) => t.int64_data.clone(),
                _ => t.int32_data.iter().map(|&v| v as i64).collect(),
            };
            if ints.len() != n {
                return Err(format!("{} values for shape {shape:?}", ints.len()));
            }
            return Ok(FactValue::Ints(
                shape,
                ints.into_iter().map(FactDim::Known).collect(),
            ));
        }
        other => return Err(format!("element type {other}")),
    };
    if floats.len() != n {
        return Err(format!("{} values for shape {shape:?}", floats.len()));
    }
    Ok(FactValue::F32(shape, floats))
}

/// IEEE half precision to f32.
fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f32.powi(exp - 15),
    }
}

/// A copy of `model` for tract's analysis without its weights: every initialiser of more than
/// `limit` elements becomes a graph input of its type and shape, so tract types the graph
/// without loading (and copying) gigabytes it never needs.
pub fn without_weights(model: &mut pb::ModelProto, limit: usize) -> pb::ModelProto {
    let Some(graph) = model.graph.as_mut() else {
        return model.clone();
    };
    let inits = std::mem::take(&mut graph.initializer);
    let mut light = model.clone();
    if let Some(g) = model.graph.as_mut() {
        g.initializer = inits;
    }
    let (Some(lg), Some(g)) = (light.graph.as_mut(), model.graph.as_ref()) else {
        return light;
    };
    for t in &g.initializer {
        let n: i64 = t.dims.iter().product();
        if n as usize <= limit {
            lg.initializer.push(t.clone());
            continue;
        }
        let dims = t
            .dims
            .iter()
            .map(|&d| pb::tensor_shape_proto::Dimension {
                value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
                ..Default::default()
            })
            .collect();
        lg.input.retain(|i| i.name != t.name);
        lg.input.push(pb::ValueInfoProto {
            name: t.name.clone(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: t.data_type,
                    shape: Some(pb::TensorShapeProto { dim: dims }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    light
}

/// Every initialiser's value, external data read from beside the file (`dir`); an unreadable
/// one is `(name, why)`.
pub fn initialisers(
    model: &pb::ModelProto,
    dir: &std::path::Path,
) -> Result<HashMap<String, FactValue>, (String, String)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = HashMap::new();
    for t in model.graph.as_ref().map_or(&[][..], |g| &g.initializer[..]) {
        let external = t.data_location == Some(pb::tensor_proto::DataLocation::External as i32);
        let raw: Vec<u8> = if external {
            let get = |k: &str| {
                t.external_data
                    .iter()
                    .find(|e| e.key == k)
                    .map(|e| e.value.clone())
            };
            let location = get("location").ok_or((
                t.name.clone(),
                "external data without a location".to_string(),
            ))?;
            let fail = |e: std::io::Error| (t.name.clone(), format!("{location}: {e}"));
            let mut file = std::fs::File::open(dir.join(&location)).map_err(fail)?;
            let offset: u64 = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
            let size = file.metadata().map_err(fail)?.len();
            let length: u64 = get("length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(size.saturating_sub(offset));
            if offset.saturating_add(length) > size {
                return Err((
                    t.name.clone(),
                    format!(
                        "{location} has {size} bytes, the tensor needs {}",
                        offset + length
                    ),
                ));
            }
            file.seek(SeekFrom::Start(offset)).map_err(fail)?;
            if t.data_type == 1 && length.is_multiple_of(4) {
                // f32 straight into its vector: no byte copy of a 2.7 GB model.
                let mut v = vec![0f32; length as usize / 4];
                file.read_exact(bytemuck::cast_slice_mut(&mut v))
                    .map_err(fail)?;
                let shape: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
                if shape.iter().product::<usize>() != v.len() {
                    return Err((
                        t.name.clone(),
                        format!("{} values for shape {shape:?}", v.len()),
                    ));
                }
                out.insert(t.name.clone(), FactValue::F32(shape, v));
                continue;
            }
            let mut buf = vec![0u8; length as usize];
            file.read_exact(&mut buf).map_err(fail)?;
            buf
        } else {
            t.raw_data.clone()
        };
        out.insert(
            t.name.clone(),
            decode(t, &raw).map_err(|e| (t.name.clone(), e))?,
        );
    }
    Ok(out)
}

impl Source {
    /// Builds the view of `model` with tract's `facts` about it.
    pub fn new(
        model: &pb::ModelProto,
        facts: HashMap<String, ValueFacts>,
        inits: HashMap<String, FactValue>,
        paths: &[Option<String>],
    ) -> Self {
        let g = model.graph.as_ref();
        let init_names: std::collections::HashSet<&str> = g
            .map(|g| g.initializer.iter().map(|t| t.name.as_str()).collect())
            .unwrap_or_default();
        let mut nodes = vec![];
        // Module paths by value, for nodes an optimiser made without metadata (onnxscript
        // fuses a DiT block's six `Slice`s into one `Split`): they take their input's module.
        let mut module_of: HashMap<&str, String> = HashMap::new();
        for (k, n) in g.map_or(&[][..], |g| &g.node[..]).iter().enumerate() {
            let inherited = || {
                let from = n.input.iter().find_map(|v| module_of.get(v.as_str()))?;
                Some(format!("{from}/{}", n.name.trim_start_matches('/')))
            };
            let path = match paths.get(k) {
                Some(Some(p)) => Some(p.clone()),
                _ if !paths.is_empty() => inherited(),
                _ => None,
            };
            if let Some(p) = &path {
                let module = p.rsplit_once('/').map_or("", |m| m.0).to_string();
                for o in &n.output {
                    module_of.insert(o.as_str(), module.clone());
                }
            }
            let name = if let Some(path) = path {
                path
            } else if n.name.is_empty() {
                n.output.first().cloned().unwrap_or_default()
            } else {
                n.name.clone()
            };
            nodes.push(OnnxNode {
                name,
                op: n.op_type.clone(),
                inputs: n.input.clone(),
                outputs: n.output.clone(),
                attrs: n.attribute.clone(),
            });
        }
        let mut producer = HashMap::new();
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for o in &n.outputs {
                producer.insert(o.clone(), i);
            }
            for v in n.inputs.iter().filter(|v| !v.is_empty()) {
                consumers.entry(v.clone()).or_default().push(i);
            }
        }
        let inputs = g
            .map_or(&[][..], |g| &g.input[..])
            .iter()
            .filter(|vi| !init_names.contains(vi.name.as_str()))
            .map(|vi| {
                let elem = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                    Some(pb::type_proto::Value::TensorType(t)) => t.elem_type,
                    _ => 0,
                };
                // TensorProto.DataType: 1 float, 10 float16, 11 double, 16 bfloat16.
                GraphInput {
                    name: vi.name.clone(),
                    integer: !matches!(elem, 1 | 10 | 11 | 16),
                }
            })
            .collect();
        let outputs = g
            .map_or(&[][..], |g| &g.output[..])
            .iter()
            .map(|o| o.name.clone())
            .collect();
        let metadata = model
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        Source {
            nodes,
            inputs,
            outputs,
            facts,
            producer,
            consumers,
            metadata,
            inits,
        }
    }

    /// The value `v` folded to a constant, if it is one.
    pub fn constant(&self, v: &str) -> Option<&FactValue> {
        self.inits
            .get(v)
            .or_else(|| self.facts.get(v).and_then(|f| f.value.as_ref()))
    }

    /// Whether `v` is one of the file's initialisers.
    pub fn is_initialiser(&self, v: &str) -> bool {
        self.inits.contains_key(v)
    }

    /// Whether `v` is a constant (an initialiser, a `Constant`, folded shape arithmetic).
    pub fn is_constant(&self, v: &str) -> bool {
        self.constant(v).is_some()
    }

    /// `v`'s float data and shape, if it is a float constant.
    pub fn floats(&self, v: &str) -> Option<(&[usize], &[f32])> {
        match self.constant(v)? {
            FactValue::F32(s, d) => Some((s, d)),
            FactValue::Ints(..) => None,
        }
    }

    /// `v`'s integer data, if it is an integer constant with no symbolic entry.
    pub fn ints(&self, v: &str) -> Option<Vec<i64>> {
        match self.constant(v)? {
            FactValue::Ints(_, d) => d
                .iter()
                .map(|x| match x {
                    FactDim::Known(k) => Some(*k),
                    FactDim::Symbolic(_) => None,
                })
                .collect(),
            FactValue::F32(..) => None,
        }
    }

    /// `v`'s shape, with symbolic axes as `None`.
    pub fn shape(&self, v: &str) -> Option<Vec<Option<i64>>> {
        if let Some(FactValue::F32(s, _) | FactValue::Ints(s, _)) = self.inits.get(v) {
            return Some(s.iter().map(|&d| Some(d as i64)).collect());
        }
        self.facts.get(v)?.shape.as_ref().map(|s| {
            s.iter()
                .map(|d| match d {
                    FactDim::Known(k) => Some(*k),
                    FactDim::Symbolic(_) => None,
                })
                .collect()
        })
    }

    /// `v`'s rank, if known.
    pub fn rank(&self, v: &str) -> Option<usize> {
        self.shape(v).map(|s| s.len())
    }

    /// The size of `v`'s axis `axis` (negative from the end), if known and not symbolic.
    pub fn dim(&self, v: &str, axis: i64) -> Option<i64> {
        let s = self.shape(v)?;
        let a = if axis < 0 {
            s.len() as i64 + axis
        } else {
            axis
        };
        s.get(usize::try_from(a).ok()?).copied().flatten()
    }

    /// The nodes consuming `v`.
    pub fn users(&self, v: &str) -> &[usize] {
        self.consumers.get(v).map_or(&[], Vec::as_slice)
    }

    /// The single node consuming `v`, if exactly one does (and `v` is not a graph output).
    pub fn only_user(&self, v: &str) -> Option<usize> {
        match self.users(v) {
            [one] if !self.outputs.iter().any(|o| o == v) => Some(*one),
            _ => None,
        }
    }

    /// Whether treadc wrote the file (it has `treadc.*` metadata): its value names are the
    /// model's op names.
    pub fn written_by_treadc(&self) -> bool {
        self.metadata
            .iter()
            .any(|(k, _)| k.starts_with(crate::keys::PREFIX))
    }

    /// A `treadc.*` metadata value.
    pub fn meta(&self, key: &str) -> Option<&str> {
        let key = crate::keys::full(key);
        self.metadata
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamo_scopes_read_as_torchscript_paths() {
        assert_eq!(
            scopes_to_path("['', 'blocks.0', 'blocks.0.attn', 'blocks.0.attn.qkv', 'linear_3']")
                .as_deref(),
            Some("/blocks.0/attn/qkv/linear_3")
        );
        assert_eq!(
            scopes_to_path("['', 't_embedder', 't_embedder.mlp', 't_embedder.mlp.0', 'linear']")
                .as_deref(),
            Some("/t_embedder/mlp/0/linear")
        );
        assert_eq!(scopes_to_path("['', 'add_1']").as_deref(), Some("/add_1"));
        assert_eq!(scopes_to_path("not a list"), None);
    }
}
