//! The intermediate representation: types, ops and the graph.

mod graph;
mod op;
mod types;

pub use graph::{AppliedRoute, BlockInfo, Graph, Node, NodeId, Place};
pub use op::{
    GeluApprox, GluAct, InputRole, NormFlavour, Op, OpKind, ParamInit, TokenBehaviour, WrittenBy,
};
pub use types::{DType, Dim, Segment, ValueType, IMAGE_STREAM, TEXT_STREAM};
