//! A link's connection settings, read from link config (and secrets, which win when present).
//! Validated once when the link arrives, so a bad value is reported naming the link instead of
//! surfacing later as a confusing query error.
use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

#[derive(Clone, Debug, PartialEq)]
pub struct LinkSettings {
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Never logged (`Debug` of the options redacts it through `redacted`).
    pub password: Option<String>,
    pub database: String,
    /// How the connection is encrypted and the server checked: libpq's `sslmode` values
    /// (`POSTGRES_TLS_MODE`; `POSTGRES_TLS_REQUIRED=true` is `require`).
    pub tls_mode: TlsMode,
    /// The CA a `verify-ca`/`verify-full` connection checks the server's certificate against
    /// (a managed database's CA bundle); without it, the public roots.
    pub tls_ca_file: Option<String>,
    pub pool_size: u32,
    /// The component's own schema: set as search_path on every connection and created on link.
    pub schema: Option<String>,
    /// Directory of sqlx migrations (`<version>_<name>.sql`) applied to the schema on link.
    pub migrations: Option<String>,
    /// Create the database when it does not exist (local runs and tests).
    pub create_database: bool,
    /// The most one call may take, from waiting for a connection to the last row: past it the
    /// call answers "unavailable" (a hung server, a lock held by someone else), so a caller is
    /// never held longer. Postgres is also told (`statement_timeout`, `lock_timeout`) so it stops
    /// the work itself.
    pub call_timeout: Duration,
}

fn get<'a>(
    config: &'a HashMap<String, String>,
    secrets: &'a HashMap<String, String>,
    key: &str,
) -> Option<&'a str> {
    secrets
        .get(key)
        .or_else(|| config.get(key))
        .map(String::as_str)
        .map(str::trim)
}

fn parse<T: std::str::FromStr>(value: Option<&str>, key: &str, default: T) -> Result<T> {
    match value {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{key}: `{v}` is not a valid value")),
    }
}

/// libpq's `sslmode`, as a managed Postgres documents it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it (libpq's default; not ours, see `tls_mode`).
    Prefer,
    /// TLS always; the certificate is not checked.
    Require,
    /// TLS always, with a certificate signed by the CA (`POSTGRES_TLS_CA_FILE`).
    VerifyCa,
    /// `verify-ca`, and the certificate names `POSTGRES_HOST`: what a managed database needs.
    VerifyFull,
}

impl TlsMode {
    fn ssl_mode(self) -> PgSslMode {
        match self {
            TlsMode::Disable => PgSslMode::Disable,
            TlsMode::Prefer => PgSslMode::Prefer,
            TlsMode::Require => PgSslMode::Require,
            TlsMode::VerifyCa => PgSslMode::VerifyCa,
            TlsMode::VerifyFull => PgSslMode::VerifyFull,
        }
    }
}

/// `POSTGRES_TLS_MODE`, or `require` when the older `POSTGRES_TLS_REQUIRED` is true, else
/// `disable`: what the provider did before it could speak TLS at all. Not libpq's `prefer`:
/// measured, over TLS a call cut at its timeout leaves its connection unusable for longer than
/// the next call's timeout (sqlx closing a TLS connection mid-statement), so a one-connection
/// link failed the call after a timeout too; and `prefer` checks nothing, so a remote database
/// wants `verify-full` anyway.
fn tls_mode(
    config: &HashMap<String, String>,
    secrets: &HashMap<String, String>,
) -> Result<TlsMode> {
    let required = parse(
        get(config, secrets, "POSTGRES_TLS_REQUIRED"),
        "POSTGRES_TLS_REQUIRED",
        false,
    )?;
    Ok(match get(config, secrets, "POSTGRES_TLS_MODE") {
        None | Some("") if required => TlsMode::Require,
        None | Some("") | Some("disable") => TlsMode::Disable,
        Some("prefer") => TlsMode::Prefer,
        Some("require") => TlsMode::Require,
        Some("verify-ca") => TlsMode::VerifyCa,
        Some("verify-full") => TlsMode::VerifyFull,
        Some(other) => bail!(
            "POSTGRES_TLS_MODE `{other}` is none of disable, prefer, require, verify-ca, verify-full"
        ),
    })
}

/// A setting that may come from a secret the link names (`<key>_SECRET: <secret name>`), else
/// from plain config. A secret's name is one per manifest (wadm keys secret references by it), so
/// each link names the secrets that hold its credentials. The login role comes this way too: it
/// alternates between two roles when the password rotates (docs/operations.md), and a secret
/// changes with its password where a link's config would not.
fn from_named_secret(
    config: &HashMap<String, String>,
    secrets: &HashMap<String, String>,
    key: &str,
) -> Result<Option<String>> {
    let reference = format!("{key}_SECRET");
    match get(config, secrets, &reference).filter(|name| !name.is_empty()) {
        Some(name) => secrets
            .get(name)
            .map(|value| Some(value.clone()))
            .with_context(|| {
                format!("{reference} names the secret `{name}`, which the link does not carry")
            }),
        None => Ok(get(config, secrets, key).map(str::to_string)),
    }
}

/// Schema names end up in SQL text (`SET search_path`), so only plain identifiers pass.
pub fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

impl LinkSettings {
    pub fn from_link(
        config: &HashMap<String, String>,
        secrets: &HashMap<String, String>,
    ) -> Result<Self> {
        let database = get(config, secrets, "POSTGRES_DATABASE")
            .filter(|d| !d.is_empty())
            .context("POSTGRES_DATABASE is required")?
            .to_string();
        let schema = get(config, secrets, "POSTGRES_SCHEMA").filter(|s| !s.is_empty());
        if let Some(schema) = schema {
            if !valid_identifier(schema) {
                bail!("POSTGRES_SCHEMA `{schema}` must be a lower-case identifier");
            }
        }
        if config.contains_key("POSTGRES_PASSWORD") && !secrets.contains_key("POSTGRES_PASSWORD") {
            tracing::warn!("POSTGRES_PASSWORD comes from plain link config; prefer a wadm secret outside local runs");
        }
        let password = from_named_secret(config, secrets, "POSTGRES_PASSWORD")?;
        let pool_size = parse(
            get(config, secrets, "POSTGRES_POOL_SIZE"),
            "POSTGRES_POOL_SIZE",
            8u32,
        )?;
        if pool_size == 0 {
            bail!("POSTGRES_POOL_SIZE must be at least 1");
        }
        Ok(Self {
            host: get(config, secrets, "POSTGRES_HOST")
                .unwrap_or("127.0.0.1")
                .to_string(),
            port: parse(get(config, secrets, "POSTGRES_PORT"), "POSTGRES_PORT", 5432)?,
            username: from_named_secret(config, secrets, "POSTGRES_USERNAME")?
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "postgres".into()),
            password,
            database,
            tls_mode: tls_mode(config, secrets)?,
            tls_ca_file: get(config, secrets, "POSTGRES_TLS_CA_FILE")
                .filter(|f| !f.is_empty())
                .map(str::to_string),
            pool_size,
            schema: schema.map(str::to_string),
            migrations: get(config, secrets, "POSTGRES_MIGRATIONS")
                .filter(|m| !m.is_empty())
                .map(|m| m.strip_prefix("file://").unwrap_or(m).to_string()),
            create_database: parse(
                get(config, secrets, "POSTGRES_CREATE_DATABASE"),
                "POSTGRES_CREATE_DATABASE",
                false,
            )?,
            call_timeout: Duration::from_millis(parse(
                get(config, secrets, "POSTGRES_TIMEOUT_MS"),
                "POSTGRES_TIMEOUT_MS",
                1500u64,
            )?),
        })
    }

    /// The same database, schema and migrations, reached with other credentials (a rotation):
    /// what was prepared for one is prepared for the other.
    pub fn same_place(&self, other: &Self) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.database == other.database
            && self.schema == other.schema
            && self.migrations == other.migrations
            && self.create_database == other.create_database
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        self.connect_options_for(&self.database)
    }

    /// Options for another database on the same server (`postgres`, to create ours).
    pub fn connect_options_for(&self, database: &str) -> PgConnectOptions {
        let mut options = PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.username)
            .database(database)
            .ssl_mode(self.tls_mode.ssl_mode())
            .application_name("pm-postgres-provider")
            // Postgres ends a statement (57014) or a lock wait (55P03) that outlives the call,
            // so work the provider gave up on does not go on holding locks and connections.
            .options([
                (
                    "statement_timeout",
                    self.call_timeout.as_millis().to_string(),
                ),
                ("lock_timeout", self.call_timeout.as_millis().to_string()),
            ]);
        if let Some(password) = &self.password {
            options = options.password(password);
        }
        if let Some(ca) = &self.tls_ca_file {
            options = options.ssl_root_cert(ca);
        }
        options
    }

    /// `user@host:port/database` for log lines: never the password.
    pub fn describe(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.username, self.host, self.port, self.database
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use provider_support::map_of as map;

    #[test]
    fn defaults_and_required_database() {
        let err = LinkSettings::from_link(&map(&[]), &map(&[])).unwrap_err();
        assert!(err.to_string().contains("POSTGRES_DATABASE"));
        let s = LinkSettings::from_link(&map(&[("POSTGRES_DATABASE", "pm")]), &map(&[])).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.pool_size),
            ("127.0.0.1", 5432, 8)
        );
        assert_eq!(s.describe(), "postgres@127.0.0.1:5432/pm");
    }

    #[test]
    fn secrets_win_over_config_and_password_is_not_described() {
        let s = LinkSettings::from_link(
            &map(&[
                ("POSTGRES_DATABASE", "pm"),
                ("POSTGRES_PASSWORD", "from-config"),
            ]),
            &map(&[("POSTGRES_PASSWORD", "from-secret")]),
        )
        .unwrap();
        assert_eq!(s.password.as_deref(), Some("from-secret"));
        assert!(!s.describe().contains("secret"));
    }

    #[test]
    fn the_password_comes_from_the_secret_the_link_names() {
        let config = map(&[
            ("POSTGRES_DATABASE", "pm"),
            ("POSTGRES_PASSWORD_SECRET", "auth_db_password"),
        ]);
        let s = LinkSettings::from_link(&config, &map(&[("auth_db_password", "pw1")])).unwrap();
        assert_eq!(s.password.as_deref(), Some("pw1"));
        let missing = LinkSettings::from_link(&config, &map(&[("other", "pw2")]));
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("auth_db_password"));
        let mut config = config;
        config.insert("POSTGRES_USERNAME".into(), "plain".into());
        config.insert("POSTGRES_USERNAME_SECRET".into(), "auth_db_user".into());
        let s = LinkSettings::from_link(
            &config,
            &map(&[("auth_db_password", "pw1"), ("auth_db_user", "pm_auth_b")]),
        )
        .unwrap();
        assert_eq!(s.username, "pm_auth_b", "the named secret wins");
        assert!(LinkSettings::from_link(&config, &map(&[("auth_db_password", "pw1")])).is_err());
    }

    #[test]
    fn tls_modes_are_libpqs() {
        let mode = |pairs: &[(&str, &str)]| {
            let mut all = vec![("POSTGRES_DATABASE", "pm")];
            all.extend_from_slice(pairs);
            LinkSettings::from_link(&map(&all), &map(&[])).map(|s| s.tls_mode)
        };
        assert_eq!(mode(&[]).unwrap(), TlsMode::Disable);
        assert_eq!(
            mode(&[("POSTGRES_TLS_MODE", "prefer")]).unwrap(),
            TlsMode::Prefer
        );
        assert_eq!(
            mode(&[("POSTGRES_TLS_REQUIRED", "true")]).unwrap(),
            TlsMode::Require
        );
        assert_eq!(
            mode(&[("POSTGRES_TLS_MODE", "verify-full")]).unwrap(),
            TlsMode::VerifyFull
        );
        let error = mode(&[("POSTGRES_TLS_MODE", "on")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("POSTGRES_TLS_MODE"), "{error}");
    }

    #[test]
    fn rejects_bad_values_naming_the_key() {
        let bad_port = LinkSettings::from_link(
            &map(&[("POSTGRES_DATABASE", "pm"), ("POSTGRES_PORT", "x")]),
            &map(&[]),
        );
        assert!(bad_port.unwrap_err().to_string().contains("POSTGRES_PORT"));
        let bad_schema = LinkSettings::from_link(
            &map(&[("POSTGRES_DATABASE", "pm"), ("POSTGRES_SCHEMA", "a;drop")]),
            &map(&[]),
        );
        assert!(bad_schema
            .unwrap_err()
            .to_string()
            .contains("POSTGRES_SCHEMA"));
    }

    #[test]
    fn migrations_path_accepts_file_urls() {
        let s = LinkSettings::from_link(
            &map(&[
                ("POSTGRES_DATABASE", "pm"),
                ("POSTGRES_MIGRATIONS", "file:///repo/m"),
            ]),
            &map(&[]),
        )
        .unwrap();
        assert_eq!(s.migrations.as_deref(), Some("/repo/m"));
    }
}
