//! The ONNX graph as the importer reads it: nodes in file order (ONNX requires topological
//! order), who produces and who consumes each value, and tract's facts (shapes with the batch
//! symbolic, folded constants) for every value.

use std::collections::HashMap;

use crate::pb;
use crate::tract::{FactDim, FactValue, ValueFacts};

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
}

impl Source {
    /// Builds the view of `model` with tract's `facts` about it.
    pub fn new(model: &pb::ModelProto, facts: HashMap<String, ValueFacts>) -> Self {
        let g = model.graph.as_ref();
        let inits: std::collections::HashSet<&str> = g
            .map(|g| g.initializer.iter().map(|t| t.name.as_str()).collect())
            .unwrap_or_default();
        let mut nodes = vec![];
        for n in g.map_or(&[][..], |g| &g.node[..]) {
            let name = if n.name.is_empty() {
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
            .filter(|vi| !inits.contains(vi.name.as_str()))
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
        }
    }

    /// The value `v` folded to a constant, if it is one.
    pub fn constant(&self, v: &str) -> Option<&FactValue> {
        self.facts.get(v).and_then(|f| f.value.as_ref())
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
        self.facts.get(v)?.shape.as_ref().map(Vec::len)
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

    /// A `treadc.*` metadata value.
    pub fn meta(&self, key: &str) -> Option<&str> {
        let key = crate::keys::full(key);
        self.metadata
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}
