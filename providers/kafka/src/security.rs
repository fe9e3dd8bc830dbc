//! How the provider reaches the brokers: in plain text (the lattice's own broker on a machine
//! it trusts), or over TLS and SASL as a managed Kafka asks. Chosen by values only: config keys
//! for the protocol, mechanism and CA, secrets for the account (docs/deploy.md, "Managed
//! Postgres, Redis and Kafka").
use std::fmt;
use std::path::Path;

use anyhow::{bail, Result};
use rdkafka::ClientConfig;

use crate::settings::Values;

/// librdkafka's `security.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    fn parse(value: &str) -> Result<Self> {
        Ok(match value.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Self::Plaintext,
            "SSL" => Self::Ssl,
            "SASL_PLAINTEXT" => Self::SaslPlaintext,
            "SASL_SSL" => Self::SaslSsl,
            _ => bail!(
                "SECURITY_PROTOCOL: `{value}` is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
            ),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn encrypted(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    fn authenticated(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// The SASL mechanisms librdkafka speaks with a user name and password. GSSAPI (Kerberos) and
/// OAUTHBEARER need more than values and are not offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    fn parse(value: &str) -> Result<Self> {
        Ok(match value.to_ascii_uppercase().as_str() {
            "PLAIN" => Self::Plain,
            "SCRAM-SHA-256" => Self::ScramSha256,
            "SCRAM-SHA-512" => Self::ScramSha512,
            _ => {
                bail!("SASL_MECHANISM: `{value}` is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A password that never reaches a log: `{:?}` prints a placeholder.
#[derive(Clone, PartialEq)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sasl {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: Password,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Security {
    pub protocol: Protocol,
    /// The CA bundle the brokers' certificates are checked against; without it, the system's
    /// roots (a managed Kafka with a publicly signed certificate needs none).
    pub ca_file: Option<String>,
    pub sasl: Option<Sasl>,
}

impl Security {
    /// `SECURITY_PROTOCOL` (default PLAINTEXT), `CA_FILE`, `SASL_MECHANISM`, `SASL_USERNAME` from
    /// config or secrets, and `SASL_PASSWORD` from secrets only: config is readable by anyone
    /// who may read the lattice's configs (`wash config get`), secrets only by this provider.
    pub fn resolve(values: &Values<'_>) -> Result<Self> {
        let protocol = values
            .config("SECURITY_PROTOCOL")
            .map_or(Ok(Protocol::Plaintext), Protocol::parse)?;
        if values.config("SASL_PASSWORD").is_some() {
            bail!("SASL_PASSWORD must be a secret, not config (config can be read by anyone who may list the lattice's configs)");
        }
        let ca_file = values.config("CA_FILE").map(str::to_string);
        match (&ca_file, protocol.encrypted()) {
            (Some(_), false) => bail!(
                "CA_FILE is set but SECURITY_PROTOCOL is {}: use SSL or SASL_SSL to check the brokers' certificates",
                protocol.name().to_ascii_uppercase()
            ),
            (Some(file), true) if !Path::new(file).is_file() => {
                bail!("CA_FILE: {file} is not a file on this host")
            }
            _ => {}
        }
        let sasl_keys: Vec<&str> = ["SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD"]
            .into_iter()
            .filter(|key| values.config_or_secret(key).is_some())
            .collect();
        if !protocol.authenticated() {
            if !sasl_keys.is_empty() {
                bail!(
                    "{} set but SECURITY_PROTOCOL is {}: use SASL_SSL (or SASL_PLAINTEXT) to sign in",
                    sasl_keys.join(", "),
                    protocol.name().to_ascii_uppercase()
                );
            }
            return Ok(Self {
                protocol,
                ca_file,
                sasl: None,
            });
        }
        let required = |key: &str, found: Option<&str>| -> Result<String> {
            match found {
                Some(value) => Ok(value.to_string()),
                None => bail!(
                    "{key} is required with SECURITY_PROTOCOL {}",
                    protocol.name().to_ascii_uppercase()
                ),
            }
        };
        let mechanism = Mechanism::parse(&required(
            "SASL_MECHANISM",
            values.config("SASL_MECHANISM"),
        )?)?;
        if mechanism == Mechanism::Plain && !protocol.encrypted() {
            bail!("SASL PLAIN sends the password as it is: use SECURITY_PROTOCOL SASL_SSL, or a SCRAM mechanism");
        }
        Ok(Self {
            protocol,
            ca_file,
            sasl: Some(Sasl {
                mechanism,
                username: required("SASL_USERNAME", values.config_or_secret("SASL_USERNAME"))?,
                password: Password(required(
                    "SASL_PASSWORD (a secret)",
                    values.secret("SASL_PASSWORD"),
                )?),
            }),
        })
    }

    /// Sets librdkafka's properties for this security on a client's config.
    pub fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.name());
        if let Some(ca) = &self.ca_file {
            config.set("ssl.ca.location", ca);
        }
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanisms", sasl.mechanism.name())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password.0);
        }
    }
}

/// For logs: the protocol, and the mechanism and user where there is one (never the password).
impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.protocol.name())?;
        if let Some(sasl) = &self.sasl {
            write!(f, " ({} as {})", sasl.mechanism.name(), sasl.username)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provider_support::map_of as map;

    fn resolve(config: &[(&str, &str)], secrets: &[(&str, &str)]) -> Result<Security> {
        let (config, secrets) = (map(config), map(secrets));
        Security::resolve(&Values::new(&[&config], &[&secrets]))
    }

    fn error(config: &[(&str, &str)], secrets: &[(&str, &str)]) -> String {
        format!("{:#}", resolve(config, secrets).unwrap_err())
    }

    #[test]
    fn plain_text_by_default() {
        let s = resolve(&[], &[]).unwrap();
        assert_eq!(
            (s.protocol, s.ca_file, s.sasl),
            (Protocol::Plaintext, None, None)
        );
    }

    #[test]
    fn sasl_over_tls_takes_the_account_from_secrets() {
        let s = resolve(
            &[
                ("SECURITY_PROTOCOL", "sasl_ssl"),
                ("SASL_MECHANISM", "scram-sha-512"),
            ],
            &[("SASL_USERNAME", "platform"), ("SASL_PASSWORD", "pw")],
        )
        .unwrap();
        let sasl = s.sasl.as_ref().unwrap();
        assert_eq!(
            (s.protocol, sasl.mechanism, sasl.username.as_str()),
            (Protocol::SaslSsl, Mechanism::ScramSha512, "platform")
        );
        assert_eq!(s.to_string(), "sasl_ssl (SCRAM-SHA-512 as platform)");
        assert!(!format!("{s:?}").contains("pw"), "{s:?}");
        let mut config = ClientConfig::new();
        s.apply(&mut config);
        assert_eq!(config.get("sasl.password"), Some("pw"));
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
    }

    #[test]
    fn a_password_in_config_is_refused() {
        let e = error(
            &[
                ("SECURITY_PROTOCOL", "SASL_SSL"),
                ("SASL_MECHANISM", "PLAIN"),
                ("SASL_USERNAME", "u"),
                ("SASL_PASSWORD", "pw"),
            ],
            &[],
        );
        assert!(e.contains("SASL_PASSWORD must be a secret"), "{e}");
    }

    #[test]
    fn what_is_missing_or_contradictory_is_named() {
        let sasl = [("SECURITY_PROTOCOL", "SASL_SSL")];
        assert!(error(&sasl, &[]).contains("SASL_MECHANISM is required"));
        let with_mechanism = [sasl[0], ("SASL_MECHANISM", "SCRAM-SHA-256")];
        assert!(
            error(&with_mechanism, &[("SASL_PASSWORD", "p")]).contains("SASL_USERNAME is required")
        );
        assert!(error(&with_mechanism, &[("SASL_USERNAME", "u")])
            .contains("SASL_PASSWORD (a secret) is required"));
        assert!(error(&[sasl[0], ("SASL_MECHANISM", "GSSAPI")], &[]).contains("not one of"));
        assert!(error(&[("SECURITY_PROTOCOL", "tls")], &[]).contains("not one of"));
        assert!(
            error(&[("SASL_MECHANISM", "PLAIN")], &[]).contains("SECURITY_PROTOCOL is PLAINTEXT")
        );
        assert!(error(&[], &[("SASL_PASSWORD", "p")]).contains("SASL_PASSWORD set"));
        assert!(error(&[("CA_FILE", "/etc/hostname")], &[]).contains("use SSL or SASL_SSL"));
        assert!(error(
            &[
                ("SECURITY_PROTOCOL", "SSL"),
                ("CA_FILE", "/nonexistent/ca.pem")
            ],
            &[]
        )
        .contains("is not a file"));
        let e = error(
            &[
                ("SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                ("SASL_MECHANISM", "PLAIN"),
            ],
            &[("SASL_USERNAME", "u"), ("SASL_PASSWORD", "p")],
        );
        assert!(e.contains("sends the password as it is"), "{e}");
    }
}
