//! Test-only component: each HTTP route performs one provider operation so end-to-end tests can
//! check the providers through a real host (typed SQL round trips, transactions, atomics,
//! compare-and-swap, publishing), and its messaging handler counts deliveries per message id.
#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(target_arch = "wasm32")]
mod sql;
