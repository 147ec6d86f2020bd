//! `tread-onnx`: everything treadc does with ONNX, and the only crate that links tract.
//!
//! - [`export`]: the dense inference graph and its weights as an ONNX `ModelProto` (opsets
//!   17–23, EDM preconditioning optional), encoded and written atomically, read back;
//! - [`import`]: an ONNX file (torch's or treadc's) back into a model.json and its weights;
//! - [`keys`]: the `treadc.*` metadata keys, shared by the writer and every reader;
//! - [`sanity`]: attribute bounds checked before tract sees a file;
//! - [`tract`]: loading an ONNX file on tract for one batch size and running it on host
//!   buffers (`treadc export --check`, `treadc run`, `treadc bench model.onnx`).
//!
//! Why a crate of its own: the compiler stays pure (it builds and tests without protobuf or
//! tract) and the runtime's burn code never sees an ONNX type.

pub mod export;
pub mod import;
pub mod keys;
pub mod sanity;
pub mod tract;

/// The protobuf types of ONNX (tract-onnx's prost-generated schema), re-exported so callers
/// read and write files with one schema without naming tract.
pub use tract_onnx::pb;
