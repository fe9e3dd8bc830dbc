//! The billing component: `routes` (the HTTP answers, plain Rust) and `component` (the typed
//! `pm:platform/billing` interface patients calls, the HTTP glue and the SQL).
pub mod routes;

#[cfg(target_arch = "wasm32")]
mod component;
