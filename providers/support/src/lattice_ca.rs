//! The CA a provider's NATS connection trusts. It comes from the named config `lattice-tls`
//! (key [`CONFIG_KEY`]) as the certificate itself, not a path: a host on another machine starts
//! the provider there, where no path of the lattice machine exists (docs/deploy.md). The PEM is
//! public; it is written to a file named for its content, because the SDK's NATS client reads
//! the CAs it trusts from the file `SSL_CERT_FILE` names.
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The config key holding the lattice's CA certificate (PEM); empty on a NATS without TLS.
pub const CONFIG_KEY: &str = "nats_tls_ca";

/// The SDK connects to the lattice's NATS over TLS (the host hands it a `tls://` URL) and trusts
/// whatever rustls-native-certs loads; the host starts providers with an empty environment, so
/// that would be the system's public CAs. Pointing `SSL_CERT_FILE` at the lattice's CA makes it
/// trust that one only. Called before the SDK starts any connection or thread that reads the
/// environment.
pub fn trust(config: &std::collections::HashMap<String, String>) -> anyhow::Result<()> {
    if let Some(pem) = config.get(CONFIG_KEY).filter(|pem| !pem.trim().is_empty()) {
        let file = write_once(&std::env::temp_dir(), pem)?;
        std::env::set_var("SSL_CERT_FILE", file);
    }
    Ok(())
}

/// Writes `pem` to `dir/pm-lattice-ca-<hash of pem>.pem` (unless that file holds it already) and
/// returns its path. Every provider on a host writes the same file; each writes a file of its own
/// and renames it into place, so none reads another's half-written one.
fn write_once(dir: &Path, pem: &str) -> anyhow::Result<PathBuf> {
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        bail!(
            "config `{CONFIG_KEY}` is not a PEM certificate (it holds the CA itself, not a path)"
        );
    }
    let mut hasher = DefaultHasher::new();
    pem.hash(&mut hasher);
    let file = dir.join(format!("pm-lattice-ca-{:016x}.pem", hasher.finish()));
    if std::fs::read_to_string(&file).is_ok_and(|held| held == pem) {
        return Ok(file);
    }
    let partial = dir.join(format!(
        "pm-lattice-ca-{:016x}.{}.partial",
        hasher.finish(),
        std::process::id()
    ));
    std::fs::write(&partial, pem).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &file).with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn the_certificate_lands_in_one_file_named_for_it() {
        let dir = std::env::temp_dir().join(format!("pm-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = write_once(&dir, PEM).unwrap();
        assert_eq!(std::fs::read_to_string(&first).unwrap(), PEM);
        assert_eq!(write_once(&dir, PEM).unwrap(), first, "same CA, same file");
        let other = PEM.replace("MIIB", "MIIC");
        assert_ne!(write_once(&dir, &other).unwrap(), first);
        // Nothing half-written is left behind.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_where_the_certificate_belongs_is_refused() {
        let error = write_once(
            &std::env::temp_dir(),
            "/build/stacks/default/secrets/ca.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("not a PEM certificate"), "{error}");
    }
}
