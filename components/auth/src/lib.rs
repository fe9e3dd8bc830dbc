//! The auth component. `credentials` (what a login or a new user must look like) and `routes`
//! (status codes and bodies) are plain Rust, unit-tested natively; `component` is the WIT glue
//! and the SQL.
pub mod credentials;
pub mod routes;

#[cfg(target_arch = "wasm32")]
mod component;
