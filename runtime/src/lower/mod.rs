//! Everything that touches burn's API lives under this module: values, the op lowering, the
//! interpreter, parameters, optimiser and EMA, objectives and samplers. burn's API moves between
//! releases (we pin 0.21.0 because its `cuda` feature builds offline); keeping it in one room
//! keeps an upgrade to one room.

pub mod backends;
pub mod classifier;
pub mod collective;
pub mod forward;
pub mod fused;
pub mod group;
pub mod objective;
pub mod ops;
pub mod optim;
pub mod pass;
mod peer_panics;
pub mod reference;
pub mod sample;
pub mod session;
pub mod store;
pub mod train;
pub mod value;

pub use forward::{forward, forward_all, Conditioning, ExtraInputs, Inputs};
pub use session::Session;
pub use store::ParamStore;
pub use value::Value;

#[cfg(test)]
mod streams_tests;
#[cfg(test)]
mod tests;
