//! The intermediate representation: types, ops and the graph.

mod graph;
mod op;
mod types;

pub use graph::{AppliedRoute, BlockInfo, Graph, Node, NodeId, Place};
pub use op::{GeluApprox, InputRole, Op, OpKind, ParamInit, TokenBehaviour, WrittenBy};
pub use types::{DType, Dim, ValueType};
