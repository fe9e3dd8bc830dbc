//! The auth component. `credentials` (what a login, a new user or a new password must look
//! like), `sessions` (signing in and out, the lockout), `accounts` (staff accounts) and `routes`
//! (dispatch and what they share) are plain Rust, unit-tested natively; `component` is the WIT
//! glue and the SQL.
pub mod accounts;
pub mod credentials;
pub mod routes;
pub mod sessions;

#[cfg(target_arch = "wasm32")]
mod component;
