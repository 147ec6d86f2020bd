//! A small builder over ONNX's protobuf types (`tract_onnx::pb`, prost-generated): nodes with
//! readable names, initialisers, shared constants and typed graph inputs/outputs. The only file
//! of the exporter that spells protobuf field names.

use std::collections::HashMap;

use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};

use tread_compiler::ir::{DType, Dim, ValueType};

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    /// `int`.
    Int(i64),
    /// `float`.
    Float(f32),
    /// `ints`.
    Ints(Vec<i64>),
    /// `string`.
    Str(String),
}

/// A graph under construction.
#[derive(Default)]
pub struct GraphBuilder {
    /// Nodes in topological order.
    pub nodes: Vec<pb::NodeProto>,
    /// Initialisers (weights, tables, shape constants).
    pub initializers: Vec<pb::TensorProto>,
    /// Graph inputs.
    pub inputs: Vec<pb::ValueInfoProto>,
    /// Graph outputs.
    pub outputs: Vec<pb::ValueInfoProto>,
    /// Types of intermediate values (shown by Netron, checked by the ONNX checker).
    pub value_info: Vec<pb::ValueInfoProto>,
    constants: HashMap<String, String>,
}

impl GraphBuilder {
    /// Adds a node named after its first output; returns that output's name.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        let attribute = attrs.into_iter().map(|(k, v)| attribute(k, v)).collect();
        self.nodes.push(pb::NodeProto {
            name: outputs[0].to_string(),
            op_type: op_type.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute,
            ..Default::default()
        });
        outputs[0].to_string()
    }

    /// A one-output node without attributes.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], output: &str) -> String {
        self.node(op_type, inputs, &[output], vec![])
    }

    /// Adds a float initialiser (stored as little-endian raw data).
    pub fn init_f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.to_string(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            raw_data: le_bytes(data),
            ..Default::default()
        });
        name.to_string()
    }

    /// A shared int64 constant (shapes, axes, split sizes), named by its content
    /// (`const.i64[0,0,384]`) and written once however often it is used.
    pub fn const_i64(&mut self, values: &[i64]) -> String {
        let name = format!(
            "const.i64[{}]",
            values
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        if !self.constants.contains_key(&name) {
            self.initializers.push(pb::TensorProto {
                name: name.clone(),
                dims: vec![values.len() as i64],
                data_type: DataType::Int64 as i32,
                raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ..Default::default()
            });
            self.constants.insert(name.clone(), name.clone());
        }
        name
    }

    /// A shared float constant: a scalar (`shape` empty) or a vector filled with `value`.
    pub fn const_f32(&mut self, value: f32, shape: &[usize]) -> String {
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        let name = format!("const.f32[{}]={value:e}", dims.join(","));
        if !self.constants.contains_key(&name) {
            let n: usize = shape.iter().product();
            self.init_f32(&name, shape, &vec![value; n]);
            self.constants.insert(name.clone(), name.clone());
        }
        name
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, ty: &ValueType) {
        self.inputs.push(value_info(name, ty));
    }

    /// Declares a graph output.
    pub fn output(&mut self, name: &str, ty: &ValueType) {
        self.outputs.push(value_info(name, ty));
    }

    /// Records the type of an intermediate value.
    pub fn annotate(&mut self, name: &str, ty: &ValueType) {
        self.value_info.push(value_info(name, ty));
    }

    /// The finished graph.
    pub fn finish(self, name: &str) -> pb::GraphProto {
        pb::GraphProto {
            name: name.to_string(),
            node: self.nodes,
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            value_info: self.value_info,
            ..Default::default()
        }
    }
}

fn attribute(name: &str, v: Attr) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType as T;
    let mut a = pb::AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match v {
        Attr::Int(i) => {
            a.i = i;
            a.r#type = T::Int as i32;
        }
        Attr::Float(f) => {
            a.f = f;
            a.r#type = T::Float as i32;
        }
        Attr::Ints(v) => {
            a.ints = v;
            a.r#type = T::Ints as i32;
        }
        Attr::Str(s) => {
            a.s = s.into_bytes();
            a.r#type = T::String as i32;
        }
    }
    a
}

/// The ONNX element type of an IR dtype.
pub fn elem_type(d: DType) -> i32 {
    match d {
        DType::F32 => DataType::Float as i32,
        DType::I64 => DataType::Int64 as i32,
    }
}

fn value_info(name: &str, ty: &ValueType) -> pb::ValueInfoProto {
    let dim = ty
        .shape
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Known(n) => dimension::Value::DimValue(*n as i64),
                Dim::Sym(s) => dimension::Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem_type(ty.dtype),
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Little-endian bytes of `data` (ONNX raw data), written into one allocation.
fn le_bytes(data: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; data.len() * 4];
    for (chunk, v) in out.chunks_exact_mut(4).zip(data) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    out
}
