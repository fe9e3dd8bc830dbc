//! The appointments component: `appointment` (what a valid appointment is), `routes` (the HTTP
//! answers, plain Rust, tested natively) and `component` (the WIT glue, the SQL, and the
//! handler that keeps the local copy of patients from topic `patient`).
pub mod appointment;
pub mod routes;

#[cfg(target_arch = "wasm32")]
mod component;
