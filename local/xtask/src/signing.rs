//! The keys that sign our components and provider archives. A signature embeds the artifact's
//! identity (a JWT naming its subject key, issued by our account key); the host hands that JWT
//! to the secrets backend when it fetches a secret for the artifact, and the backend gives out
//! only the secrets mapped to that subject (secret_store.rs). Unsigned, a component gets no
//! secret at all.
//!
//! The keys are made once per machine and kept in the tool cache (mode 700, files 600), never in
//! the repository: every build on the machine signs with the same identities, so a rebuilt or
//! hot-swapped component keeps its secrets.
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result};
use nkeys::KeyPair;

use crate::paths;
use crate::security::write_private;

/// What an artifact is, for the kind of its subject key.
#[derive(Clone, Copy)]
pub enum Kind {
    Component,
    Provider,
}

/// A seed file and the public key it stands for.
pub struct Key {
    pub seed_file: PathBuf,
    pub public: String,
}

fn dir() -> Result<PathBuf> {
    let dir = paths::cache().join("signing-keys");
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// The key in `file`, made by `new` the first time.
fn key(file: &str, new: fn() -> KeyPair) -> Result<Key> {
    let seed_file = dir()?.join(file);
    let pair = match fs::read_to_string(&seed_file) {
        Ok(seed) => KeyPair::from_seed(seed.trim())
            .with_context(|| format!("{} is not an nkey seed", seed_file.display()))?,
        Err(_) => {
            let pair = new();
            write_private(&seed_file, &pair.seed()?)?;
            pair
        }
    };
    Ok(Key {
        seed_file,
        public: pair.public_key(),
    })
}

/// The account key that issues every artifact's identity.
pub fn issuer() -> Result<Key> {
    key("issuer.account.nk", KeyPair::new_account)
}

/// The subject key of artifact `name` (a component's module key, a provider's service key).
pub fn subject(name: &str, kind: Kind) -> Result<Key> {
    let new = match kind {
        Kind::Component => KeyPair::new_module,
        Kind::Provider => KeyPair::new_service,
    };
    key(&seed_file_name(name, kind), new)
}

fn seed_file_name(name: &str, kind: Kind) -> String {
    match kind {
        Kind::Component => format!("{name}.module.nk"),
        Kind::Provider => format!("{name}.service.nk"),
    }
}

/// Whether artifact `name` has been signed on this machine (its subject key exists).
pub fn exists(name: &str, kind: Kind) -> bool {
    dir().is_ok_and(|dir| dir.join(seed_file_name(name, kind)).is_file())
}
