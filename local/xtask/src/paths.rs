//! Where things live. Tools are cached outside the clone (keyed by version) so a fresh clone or
//! a second CI run does not rebuild them; everything a run produces stays under `build/`.
use std::path::{Path, PathBuf};

/// Repository root (the xtask crate sits at `local/xtask`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Cache for built tools: `$PM_CACHE_DIR`, else `$XDG_CACHE_HOME/patient-management`,
/// else `~/.cache/patient-management`.
pub fn cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("PM_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache")
        });
    base.join("patient-management")
}

/// Build outputs the manifest points at (`file://../build/...` from `wadm/`).
pub fn build() -> PathBuf {
    repo().join("build")
}

/// Run state of one lattice (pid files, logs, JetStream store).
pub fn stack(lattice: &str) -> PathBuf {
    build().join("stacks").join(lattice)
}
