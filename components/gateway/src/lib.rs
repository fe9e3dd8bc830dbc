//! The gateway component. `router` holds everything that decides an answer and is plain Rust;
//! `component` (wasm only) is the WIT glue that turns wasi:http into `http` types and back.
pub mod access_log;
pub mod audit;
pub mod client_address;
pub mod docs;
pub mod ratelimit;
pub mod request_id;
pub mod router;
pub mod routes;

#[cfg(target_arch = "wasm32")]
mod component;
