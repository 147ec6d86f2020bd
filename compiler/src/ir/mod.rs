//! The intermediate representation: types, ops and the graph.

mod graph;
mod op;
mod types;

pub use graph::{AppliedRoute, BlockInfo, Graph, Node, NodeId, Place};
pub use op::{GeluApprox, InputRole, Op, ParamInit, TokenBehaviour};
pub use types::{DType, Dim, ValueType};
