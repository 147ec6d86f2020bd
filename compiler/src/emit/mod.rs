//! Emitters: the text dump (the snapshot contract), Graphviz dot, and a JSON graph dump.

mod dot;
mod json;
mod numbering;
mod text;

pub use dot::to_dot;
pub use json::to_json;
pub use text::to_text;
