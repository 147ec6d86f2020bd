//! tread-runtime: runs treadc graphs on burn (training with TREAD routing, sampling,
//! checkpoints), loads the training data, feeds checkpoints to the ONNX exporter and samples from
//! exported files on tract.
//!
//! Only `lower` names burn types (the rest drives a `lower::Session`), and tract runs only in the
//! `tread-onnx` crate; data loading, init values, route index draws, the sampling loops,
//! checkpoint files and image grids work on host buffers.

pub mod alloc;
pub mod arms;
pub mod bench;
pub mod checkpoint;
pub mod condition;
pub mod data;
pub mod deploy;
pub mod devices;
pub mod draw;
pub mod eval;
pub mod export;
pub mod image_out;
pub mod init;
pub mod kernels;
pub mod lower;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod parallel;
pub mod plot;
pub mod restore;
pub mod routing;
pub mod run;
pub mod run_error;
pub mod run_folder;
pub mod sampler;
pub mod start;
pub mod text;
pub mod weights;
pub mod wgpu_adapters;
