//! Attribute bounds checked before tract sees a file: tract trusts them, and an absurd axis can
//! make its analysis spin for minutes instead of failing.

use crate::pb;

/// The largest tensor rank an axis attribute may address (ONNX files in practice stay ≤ 8).
pub const MAX_RANK: i64 = 32;
/// The largest value a count attribute (groups, heads, block sizes) may take.
pub const MAX_COUNT: i64 = 1 << 20;

/// Attributes holding axes: each value in -MAX_RANK..MAX_RANK.
const AXIS_ATTRIBUTES: [&str; 3] = ["axis", "axes", "perm"];
/// Attributes holding counts: each value in 1..=MAX_COUNT.
const COUNT_ATTRIBUTES: [&str; 6] = [
    "group",
    "num_heads",
    "q_num_heads",
    "kv_num_heads",
    "blocksize",
    "num_outputs",
];

/// Checks every node's axis and count attributes, in subgraphs too. The error names the node,
/// its op, the attribute, the value found and the range expected.
pub fn check_attributes(proto: &pb::ModelProto) -> Result<(), String> {
    proto.graph.as_ref().map_or(Ok(()), check_graph)
}

fn check_graph(g: &pb::GraphProto) -> Result<(), String> {
    for node in &g.node {
        for a in &node.attribute {
            let name = a.name.as_str();
            // Axes may be one value (`i`) or a list (`ints`, where `i` stays 0); counts are one.
            let (values, lo, hi): (Vec<i64>, i64, i64) = if AXIS_ATTRIBUTES.contains(&name) {
                let all = std::iter::once(a.i).chain(a.ints.iter().copied());
                (all.collect(), -MAX_RANK, MAX_RANK - 1)
            } else if COUNT_ATTRIBUTES.contains(&name) {
                (vec![a.i], 1, MAX_COUNT)
            } else {
                (vec![], 0, 0)
            };
            if let Some(v) = values.iter().find(|v| !(lo..=hi).contains(*v)) {
                return Err(format!(
                    "node `{}` ({}): attribute `{name}` is {v}, expected a value in {lo}..={hi}",
                    node.name, node.op_type
                ));
            }
            if name == "perm" && !is_permutation(&a.ints) {
                return Err(format!(
                    "node `{}` ({}): attribute `perm` is {:?}, expected a permutation of 0..{}",
                    node.name,
                    node.op_type,
                    a.ints,
                    a.ints.len()
                ));
            }
            for sub in a.g.iter().chain(&a.graphs) {
                check_graph(sub)?;
            }
        }
    }
    Ok(())
}

/// Whether `perm` holds each of `0..perm.len()` once (tract indexes the input's shape with it
/// unchecked).
fn is_permutation(perm: &[i64]) -> bool {
    let mut seen = vec![false; perm.len()];
    perm.iter().all(|&p| {
        let fresh = usize::try_from(p).is_ok_and(|i| i < seen.len() && !seen[i]);
        if fresh {
            seen[p as usize] = true;
        }
        fresh
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(op: &str, attribute: pb::AttributeProto) -> pb::ModelProto {
        pb::ModelProto {
            graph: Some(pb::GraphProto {
                node: vec![pb::NodeProto {
                    name: "ln".into(),
                    op_type: op.into(),
                    attribute: vec![attribute],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn int(name: &str, i: i64) -> pb::AttributeProto {
        pb::AttributeProto {
            name: name.into(),
            i,
            ..Default::default()
        }
    }

    #[test]
    fn a_mutated_axis_is_named_with_its_node() {
        let e = check_attributes(&model("LayerNormalization", int("axis", -536870913)))
            .expect_err("out of range");
        assert!(
            e.contains("`ln` (LayerNormalization)") && e.contains("-536870913"),
            "{e}"
        );
        assert!(check_attributes(&model("LayerNormalization", int("axis", -1))).is_ok());
        assert!(check_attributes(&model("Softmax", int("axis", 3))).is_ok());
    }

    #[test]
    fn axis_lists_counts_and_subgraphs_are_checked() {
        let perm = pb::AttributeProto {
            name: "perm".into(),
            ints: vec![0, 2, 1, 184549377],
            ..Default::default()
        };
        assert!(check_attributes(&model("Transpose", perm)).is_err());
        // In range, but not a permutation: tract would index past the input's rank.
        for ints in [vec![0, 2, 5], vec![0, 1, 1], vec![-1, 0]] {
            let perm = pb::AttributeProto {
                name: "perm".into(),
                ints,
                ..Default::default()
            };
            let e = check_attributes(&model("Transpose", perm)).expect_err("not a permutation");
            assert!(e.contains("expected a permutation"), "{e}");
        }
        let perm = pb::AttributeProto {
            name: "perm".into(),
            ints: vec![0, 2, 1, 3],
            ..Default::default()
        };
        assert!(check_attributes(&model("Transpose", perm)).is_ok());
        assert!(check_attributes(&model("Attention", int("q_num_heads", 0))).is_err());
        assert!(check_attributes(&model("Attention", int("q_num_heads", 4))).is_ok());
        let nested = pb::AttributeProto {
            name: "then_branch".into(),
            g: model("Concat", int("axis", 1 << 40)).graph,
            ..Default::default()
        };
        assert!(check_attributes(&model("If", nested)).is_err());
    }
}
