//! Helpers every component shares, free of any WIT or wasm detail so they compile and are
//! unit-tested natively. Components keep their WIT glue thin and call into these.
pub mod audit;
pub mod collection;
pub mod fields;
#[cfg(feature = "instants")]
pub mod instant;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod pg_float;
pub mod problem;
pub mod readiness;
pub mod request;
pub mod response;
pub mod time;
#[cfg(feature = "tokens")]
pub mod tokens;

pub use problem::Problem;
