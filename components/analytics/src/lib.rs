//! The analytics component: `counting` (what one event adds, plain Rust), `routes` (the
//! summary, for admins) and `component` (the WIT glue and the SQL that counts each event once).
pub mod counting;
pub mod routes;

#[cfg(target_arch = "wasm32")]
mod component;
