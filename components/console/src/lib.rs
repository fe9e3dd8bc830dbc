//! The staff console (issue 21): pages, scripts and styles embedded at build time (`build.rs`),
//! served through the gateway at `/`, `/reference` and `/assets/…`. The console itself runs in
//! the browser and talks only to the public API with the signed-in user's token.
pub mod files;
pub mod serve;

#[cfg(target_arch = "wasm32")]
mod component;
