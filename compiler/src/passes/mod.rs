//! Graph-to-graph passes. Each returns a new, verified graph; the input is never modified, so a
//! failed pass loses nothing.

mod fuse;
mod route;
mod strip;

pub use fuse::{fuse, FuseReport};
pub use route::apply_routes;
pub use strip::strip_routes;
