//! The patients component. `patient` (what a valid patient is), `listing` (paging, sorting,
//! search), `events` (the Kafka payload), `cache` (keys and invalidation) and `routes` (status
//! codes and bodies) are plain Rust, unit-tested natively; `component` is the WIT glue and SQL.
pub mod events;
pub mod listing;
pub mod outbox;
pub mod patient;
pub mod routes;

#[cfg(target_arch = "wasm32")]
mod component;
