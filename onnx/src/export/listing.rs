//! A readable listing of an ONNX graph (one line per node, then an op histogram): the text
//! that snapshots pin and that `treadc export --list` prints, so a reviewer sees the graph as
//! Netron would show it without opening the file.

use std::collections::BTreeMap;
use std::fmt::Write;

use tract_onnx::pb;

/// Op type → node count, sorted by op name.
pub fn op_histogram(m: &pb::ModelProto) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    if let Some(g) = &m.graph {
        for n in &g.node {
            *h.entry(n.op_type.clone()).or_insert(0) += 1;
        }
    }
    h
}

/// Number of nodes in the main graph.
pub fn node_count(m: &pb::ModelProto) -> usize {
    m.graph.as_ref().map_or(0, |g| g.node.len())
}

/// `outputs = Op(inputs)` per node, initialisers summarised, then the histogram.
pub fn listing(m: &pb::ModelProto) -> String {
    let mut s = String::new();
    let Some(g) = &m.graph else {
        return s;
    };
    let opset = m.opset_import.first().map_or(0, |o| o.version);
    let _ = writeln!(
        s,
        "graph \"{}\": opset {opset}, ir {}, {} nodes, {} initializers",
        g.name,
        m.ir_version,
        g.node.len(),
        g.initializer.len()
    );
    let io = |v: &pb::ValueInfoProto| v.name.clone();
    let _ = writeln!(
        s,
        "inputs: {}",
        g.input.iter().map(io).collect::<Vec<_>>().join(", ")
    );
    for n in &g.node {
        let _ = writeln!(
            s,
            "  {} = {}{}({})",
            n.output.join(", "),
            n.op_type,
            attrs(n),
            n.input.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "outputs: {}",
        g.output.iter().map(io).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(s, "ops:");
    for (op, n) in op_histogram(m) {
        let _ = writeln!(s, "  {op:<20} {n}");
    }
    s
}

/// `[axis=-1, perm=[0,2,1]]`, or nothing when the node has no attributes.
fn attrs(n: &pb::NodeProto) -> String {
    if n.attribute.is_empty() {
        return String::new();
    }
    let items: Vec<String> = n
        .attribute
        .iter()
        .map(|a| {
            let v = if !a.ints.is_empty() {
                format!("{:?}", a.ints).replace(' ', "")
            } else if !a.s.is_empty() {
                String::from_utf8_lossy(&a.s).into_owned()
            } else if a.r#type == pb::attribute_proto::AttributeType::Float as i32 {
                format!("{:e}", a.f)
            } else {
                a.i.to_string()
            };
            format!("{}={v}", a.name)
        })
        .collect();
    format!("[{}]", items.join(", "))
}
