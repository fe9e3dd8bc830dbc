//! The audit component: `routes` (reading and verifying the trail over HTTP, plain Rust) and
//! `component` (the typed `pm:platform/audit` the gateway appends through, the glue and the SQL).
//! The trail itself, its chain and its grants are in `trail.sql`.
pub mod filter;
pub mod routes;

#[cfg(target_arch = "wasm32")]
mod component;
