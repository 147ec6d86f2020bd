//! The model.json reader: syntax (line and column), then structure and semantics (JSON paths),
//! then block expansion, shape inference and verification. Format: `docs/model-format.md`.

mod blocks;
mod dupkeys;
pub mod fields;
mod json;
mod model;
mod ops;

pub use model::{parse_model, Model, FORMAT};
pub use ops::user_op_names;
