//! `tread-compiler`: the pure half of treadc. It reads a backbone described in model.json into a
//! typed graph IR, inserts TREAD routes (tread.md §1) as a compiler pass, verifies, analyses
//! parameters and FLOPs, and emits text / dot / JSON dumps. It has no burn dependency: the
//! runtime lowers the IR it produces.
//!
//! Pipeline: [`parse::parse_model`] → [`route_spec::resolve`] → [`passes::apply_routes`] →
//! [`analysis::analyse`] → [`emit`]; [`compile::compile_file`] runs it all.

pub mod analysis;
pub mod atomic;
pub mod compile;
pub mod config;
pub mod diag;
pub mod dims;
pub mod edm;
pub mod emit;
pub mod ir;
pub mod params;
pub mod parse;
pub mod passes;
pub mod plan;
pub mod read;
pub mod report;
pub mod route_spec;
pub mod shape;
pub mod tables;
pub mod verify;

pub use diag::{Diagnostic, ErrorKind, Result};
