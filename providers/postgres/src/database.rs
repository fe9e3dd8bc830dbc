//! One linked component's database: a lazily connecting pool, the component's schema, and its
//! migrations, applied once (and retried on the next call until they succeed, so a database that
//! was down at link time is picked up when it returns).
use std::path::Path;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, Executor};
use tokio::sync::Mutex;

use crate::bindings::wasmcloud::postgres::types::{PgValue, QueryError, ResultRow};
use crate::config::LinkSettings;
use crate::values;

/// How often a replaced pool looks whether its last call has finished, and how long past the
/// call timeout it waits at most.
const RETIRE_POLL: std::time::Duration = std::time::Duration::from_millis(50);
const RETIRE_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Database {
    pub settings: LinkSettings,
    pool: PgPool,
    /// Whether schema and migrations are in place; the mutex makes concurrent first calls wait
    /// for one migration run instead of racing.
    prepared: Mutex<bool>,
}

/// sqlx errors → the interface's errors. A statement Postgres rejected is `invalid-query`
/// prefixed with its SQLSTATE (`23505: duplicate key ...`) so components can tell a conflict
/// from a bug; anything about reaching the database is `unexpected` ("unavailable"), which
/// components answer with 503.
pub fn map_error(error: sqlx::Error) -> QueryError {
    match error {
        sqlx::Error::Database(db) => {
            let code = db
                .code()
                .map(|c| c.into_owned())
                .unwrap_or_else(|| "XX000".into());
            let message = format!("{code}: {}", db.message());
            if server_side_trouble(&code) {
                QueryError::Unexpected(format!("database unavailable: {message}"))
            } else {
                QueryError::InvalidQuery(message)
            }
        }
        sqlx::Error::ColumnNotFound(c) => {
            QueryError::InvalidQuery(format!("42703: column {c} not found"))
        }
        sqlx::Error::Encode(e) | sqlx::Error::Decode(e) => QueryError::InvalidParams(e.to_string()),
        other => QueryError::Unexpected(format!("database unavailable: {other}")),
    }
}

/// SQLSTATEs that say the database cannot serve us (connection, credentials, resources, shutdown,
/// missing database): the caller did nothing wrong, so they surface as "unavailable" (503).
/// 55P03: a lock another session holds was not released within `lock_timeout`: nothing wrong with
/// the request, so retry later.
fn server_side_trouble(code: &str) -> bool {
    matches!(&code[..code.len().min(2)], "08" | "28" | "53" | "57")
        || code == "3D000"
        || code == "55P03"
}

/// `work` bounded by the link's call timeout: a server that stopped answering (paused, a network
/// that drops packets) is "unavailable" after that long, never a caller held until the host gives
/// up. A connection abandoned mid-call is closed by sqlx, not reused.
async fn bounded<T>(
    settings: &LinkSettings,
    work: impl std::future::Future<Output = Result<T, QueryError>>,
) -> Result<T, QueryError> {
    tokio::time::timeout(settings.call_timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(QueryError::Unexpected(format!(
                "database unavailable: no answer within {:?}",
                settings.call_timeout
            )))
        })
}

impl Database {
    pub fn new(settings: LinkSettings) -> Self {
        let pool = pool_options(&settings, settings.pool_size)
            .connect_lazy_with(settings.connect_options());
        Self {
            settings,
            pool,
            prepared: Mutex::new(false),
        }
    }

    /// The database of a link whose settings changed from `old`'s. New credentials for the same
    /// place (a password rotation) need no second migration run: the new pool serves at once.
    pub fn replacing(settings: LinkSettings, old: &Database) -> Self {
        let carried = settings.same_place(&old.settings)
            && old.prepared.try_lock().is_ok_and(|prepared| *prepared);
        let database = Self::new(settings);
        if carried {
            *database
                .prepared
                .try_lock()
                .expect("a new database is not shared yet") = true;
        }
        database
    }

    /// Closes a replaced pool once the calls that took it before the replacement have finished
    /// (each holds it), so none of them finds it closed under it. None outlives the call timeout.
    pub fn retire(old: std::sync::Arc<Database>) {
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + old.settings.call_timeout + RETIRE_MARGIN;
            while std::sync::Arc::strong_count(&old) > 1 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(RETIRE_POLL).await;
            }
            old.close().await;
        });
    }

    /// Creates the database (if asked), the schema and runs migrations, once. Runs at link time;
    /// a call that finds it still running (or failed) waits for it at most the call timeout.
    pub async fn prepare(&self) -> Result<&PgPool, QueryError> {
        let mut prepared = tokio::time::timeout(self.settings.call_timeout, self.prepared.lock())
            .await
            .map_err(|_| {
                QueryError::Unexpected(
                    "database unavailable: its schema and migrations are still being applied"
                        .into(),
                )
            })?;
        if !*prepared {
            tokio::time::timeout(PREPARE_BOUND, self.create_and_migrate())
                .await
                .unwrap_or_else(|_| {
                    Err(QueryError::Unexpected(format!(
                        "database unavailable: schema and migrations not applied within {PREPARE_BOUND:?}"
                    )))
                })?;
            *prepared = true;
        }
        Ok(&self.pool)
    }

    async fn create_and_migrate(&self) -> Result<(), QueryError> {
        self.create_database().await?;
        // Connect even when there is nothing to set up, so wrong credentials or an unreachable
        // server are reported for the link now, not only on its first call.
        drop(self.pool.acquire().await.map_err(map_error)?);
        // Migrations may take longer than one call may: they run on a connection of their own
        // without the call's limits (a later `-c` setting wins over the earlier one).
        let options = self
            .settings
            .connect_options()
            .options([("statement_timeout", "0"), ("lock_timeout", "0")]);
        let migrations = pool_options(&self.settings, 1)
            .connect_with(options)
            .await
            .map_err(map_error)?;
        let outcome = self.migrate(&migrations).await;
        migrations.close().await;
        outcome
    }

    async fn migrate(&self, pool: &PgPool) -> Result<(), QueryError> {
        if let Some(schema) = &self.settings.schema {
            // A schema made beforehand for a role of its own (which may not create schemas:
            // `CREATE SCHEMA IF NOT EXISTS` checks that privilege first) is only used.
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(schema)
                    .fetch_one(pool)
                    .await
                    .map_err(map_error)?;
            if !exists {
                pool.execute(format!("CREATE SCHEMA {schema}").as_str())
                    .await
                    .map_err(map_error)?;
            }
        }
        if let Some(dir) = &self.settings.migrations {
            let migrator = sqlx::migrate::Migrator::new(Path::new(dir))
                .await
                .map_err(|e| {
                    QueryError::Unexpected(format!("migrations in {dir} cannot be read: {e}"))
                })?;
            migrator.run(pool).await.map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(inner) => map_error(inner),
                other => QueryError::Unexpected(format!("migration failed: {other}")),
            })?;
            tracing::info!(database = %self.settings.describe(), dir, "migrations applied");
        }
        Ok(())
    }

    async fn create_database(&self) -> Result<(), QueryError> {
        if !self.settings.create_database {
            return Ok(());
        }
        let name = &self.settings.database;
        if !crate::config::valid_identifier(name) {
            return Err(QueryError::InvalidParams(format!(
                "POSTGRES_CREATE_DATABASE needs a lower-case identifier as database name, not `{name}`"
            )));
        }
        let mut admin =
            sqlx::PgConnection::connect_with(&self.settings.connect_options_for("postgres"))
                .await
                .map_err(map_error)?;
        let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut admin)
            .await
            .map_err(map_error)?;
        if exists.is_none() {
            match admin
                .execute(format!("CREATE DATABASE {name}").as_str())
                .await
            {
                // 42P04: another provider instance created it a moment ago.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
                other => {
                    other.map_err(map_error)?;
                    tracing::info!(database = %name, "database created");
                }
            }
        }
        let _ = admin.close().await;
        Ok(())
    }

    pub async fn query(
        &self,
        sql: &str,
        params: Vec<PgValue>,
    ) -> Result<Vec<ResultRow>, QueryError> {
        let pool = self.prepare().await?;
        bounded(&self.settings, async {
            let query = bind_all(sql, params)?;
            let rows = query.fetch_all(pool).await.map_err(map_error)?;
            decode_all(&rows)
        })
        .await
    }

    pub async fn batch(&self, sql: &str) -> Result<(), QueryError> {
        let pool = self.prepare().await?;
        bounded(&self.settings, async {
            sqlx::raw_sql(sql).execute(pool).await.map_err(map_error)?;
            Ok(())
        })
        .await
    }

    /// Every statement in one transaction; the first failure rolls all of them back.
    pub async fn transaction(
        &self,
        statements: Vec<(String, Vec<PgValue>)>,
    ) -> Result<Vec<Vec<ResultRow>>, QueryError> {
        let pool = self.prepare().await?;
        bounded(&self.settings, transaction(pool, statements)).await
    }

    /// Closes the pool. sqlx waits for every checked-out connection to come back, and one held
    /// by a call abandoned at the drain bound never does: past a short bound the process exits
    /// with it, and Postgres drops the session.
    pub async fn close(&self) {
        if tokio::time::timeout(CLOSE_BOUND, self.pool.close())
            .await
            .is_err()
        {
            tracing::warn!(database = %self.settings.describe(), "pool still had connections out after {CLOSE_BOUND:?}");
        }
    }
}

async fn transaction(
    pool: &PgPool,
    statements: Vec<(String, Vec<PgValue>)>,
) -> Result<Vec<Vec<ResultRow>>, QueryError> {
    let mut tx = pool.begin().await.map_err(map_error)?;
    let mut results = Vec::with_capacity(statements.len());
    for (index, (sql, params)) in statements.iter().enumerate() {
        let query = bind_all(sql, params.clone())?;
        let rows = query
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| match map_error(e) {
                QueryError::InvalidQuery(m) => {
                    QueryError::InvalidQuery(format!("{m} (statement {})", index + 1))
                }
                other => other,
            })?;
        results.push(decode_all(&rows)?);
    }
    tx.commit().await.map_err(map_error)?;
    Ok(results)
}

/// A pool of at most `size` connections, each with the link's schema as its search path.
fn pool_options(settings: &LinkSettings, size: u32) -> PgPoolOptions {
    let schema = settings.schema.clone();
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(settings.call_timeout)
        .after_connect(move |conn, _| {
            let schema = schema.clone();
            Box::pin(async move {
                if let Some(schema) = schema {
                    // `schema` passed `valid_identifier`, so it is safe in SQL text.
                    conn.execute(format!("SET search_path TO {schema}").as_str())
                        .await?;
                }
                Ok(())
            })
        })
}

const CLOSE_BOUND: std::time::Duration = std::time::Duration::from_secs(2);
/// Creating the database and schema and running migrations, at link time.
const PREPARE_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// `sql` with `params` bound. A statement is prepared once per connection and kept by its text,
/// with the parameter types of its first run; an untyped NULL lets Postgres choose a type (say
/// `date`, from `$6::date`) that a later run's text value then does not fit ("22P03: incorrect
/// binary data format", found by schemathesis). So a statement run with a NULL is not kept.
fn bind_all<'q>(sql: &'q str, params: Vec<PgValue>) -> Result<values::Query<'q>, QueryError> {
    let has_null = params.iter().any(|p| matches!(p, PgValue::Null));
    let mut query = sqlx::query(sql).persistent(!has_null);
    for (index, value) in params.into_iter().enumerate() {
        query = values::bind(query, value)
            .map_err(|m| QueryError::InvalidParams(format!("parameter ${}: {m}", index + 1)))?;
    }
    Ok(query)
}

fn decode_all(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<ResultRow>, QueryError> {
    rows.iter()
        .map(values::decode_row)
        .collect::<Result<_, _>>()
        .map_err(QueryError::InvalidQuery)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine's Postgres (`PM_TEST_POSTGRES_HOST`, else 127.0.0.1), database `postgres`, one
    /// connection, so every statement of the test runs on the same connection.
    fn one_connection() -> Database {
        let host = std::env::var("PM_TEST_POSTGRES_HOST").unwrap_or_else(|_| "127.0.0.1".into());
        let config: std::collections::HashMap<String, String> = [
            ("POSTGRES_DATABASE", "postgres"),
            ("POSTGRES_HOST", host.as_str()),
            ("POSTGRES_POOL_SIZE", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Database::new(LinkSettings::from_link(&config, &Default::default()).unwrap())
    }

    #[tokio::test]
    async fn a_statement_run_with_null_then_with_text_gets_each_right() {
        let db = one_connection();
        let sql = "SELECT COALESCE($1::date, DATE '2000-01-01')::text AS d";
        for value in [
            PgValue::Null,
            PgValue::Text("2020-02-03".into()),
            PgValue::Null,
        ] {
            let rows = db.query(sql, vec![value.clone()]).await;
            assert!(rows.is_ok(), "{value:?}: {rows:?}");
        }
    }

    #[tokio::test]
    async fn a_statement_longer_than_the_call_timeout_is_stopped() {
        let db = one_connection();
        // pg_sleep would return a row after 10 s; the call is cut at its 1.5 s bound instead.
        let outcome = db.query("SELECT pg_sleep(10)", vec![]).await;
        assert!(
            matches!(&outcome, Err(QueryError::Unexpected(m)) if m.contains("unavailable")),
            "{outcome:?}"
        );
        // The connection is usable again afterwards.
        assert!(db.query("SELECT 1 AS one", vec![]).await.is_ok());
    }

    #[tokio::test]
    async fn a_replaced_pool_finishes_its_calls_then_closes() {
        let old = std::sync::Arc::new(one_connection());
        *old.prepared.lock().await = true;
        // Two calls took the link's database before it was replaced: one holds the pool's only
        // connection, the other waits for it (it would find the pool closed if the replacement
        // closed it at once).
        let call = |sql: &'static str| {
            let old = old.clone();
            tokio::spawn(async move { old.query(sql, vec![]).await })
        };
        let holding = call("SELECT pg_sleep(0.3)::text AS s");
        while old.pool.num_idle() > 0 || old.pool.size() == 0 {
            tokio::task::yield_now().await;
        }
        let waiting = call("SELECT 1 AS one");
        tokio::task::yield_now().await;
        let new = Database::replacing(old.settings.clone(), &old);
        assert!(
            *new.prepared.lock().await,
            "same place: no second migration run"
        );
        let old_pool = old.pool.clone();
        Database::retire(old);
        tokio::time::sleep(RETIRE_POLL * 2).await;
        assert!(!old_pool.is_closed(), "closed under calls in progress");
        assert!(holding.await.unwrap().is_ok());
        assert!(
            waiting.await.unwrap().is_ok(),
            "the waiting call got its connection"
        );
        tokio::time::timeout(std::time::Duration::from_secs(2), async {
            while !old_pool.is_closed() {
                tokio::time::sleep(RETIRE_POLL).await;
            }
        })
        .await
        .expect("the old pool closes once its calls are done");
        assert!(new.query("SELECT 1 AS one", vec![]).await.is_ok());

        let mut elsewhere = new.settings.clone();
        elsewhere.schema = Some("another".into());
        assert!(!*Database::replacing(elsewhere, &new).prepared.lock().await);
    }

    /// Over TLS as a managed database wants it: the machine's Postgres serves TLS (Debian's
    /// default, with its own self-signed certificate for `localhost`, which is then its own CA),
    /// and a `verify-full` link to `localhost` that trusts that certificate gets an encrypted
    /// session; one that trusts another CA is refused.
    #[tokio::test]
    async fn a_link_can_require_tls_and_check_the_servers_certificate() {
        let plain = one_connection();
        let setting = |name: &str| {
            let db = &plain;
            let sql = format!("SELECT current_setting('{name}') AS v");
            async move {
                match db
                    .query(&sql, vec![])
                    .await
                    .unwrap()
                    .remove(0)
                    .remove(0)
                    .value
                {
                    PgValue::Text(v) => v,
                    other => panic!("{other:?}"),
                }
            }
        };
        assert_eq!(
            setting("ssl").await,
            "on",
            "this test needs the machine's Postgres to serve TLS"
        );
        let certificate = setting("ssl_cert_file").await;
        // The certificate names `localhost` (Debian's snakeoil, made for this machine).
        let host =
            std::env::var("PM_TEST_POSTGRES_TLS_HOST").unwrap_or_else(|_| "localhost".into());
        let with = |mode: &str, ca: &str| {
            let config: std::collections::HashMap<String, String> = [
                ("POSTGRES_DATABASE", "postgres"),
                ("POSTGRES_HOST", host.as_str()),
                ("POSTGRES_POOL_SIZE", "1"),
                ("POSTGRES_TLS_MODE", mode),
                ("POSTGRES_TLS_CA_FILE", ca),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            Database::new(LinkSettings::from_link(&config, &Default::default()).unwrap())
        };
        let encrypted = "SELECT ssl::text AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        let verified = with("verify-full", &certificate);
        let rows = verified.query(encrypted, vec![]).await.unwrap();
        assert!(
            matches!(&rows[0][0].value, PgValue::Text(t) if t == "true"),
            "{rows:?}"
        );
        let wrong_ca = std::env::temp_dir().join(format!("pm-other-ca-{}.pem", std::process::id()));
        std::fs::write(&wrong_ca, OTHER_CA).unwrap();
        let refused = with("verify-full", wrong_ca.to_str().unwrap())
            .query("SELECT 1 AS one", vec![])
            .await;
        let _ = std::fs::remove_file(&wrong_ca);
        assert!(
            matches!(&refused, Err(QueryError::Unexpected(m)) if m.contains("unavailable")),
            "{refused:?}"
        );
    }

    /// A CA that signed nothing the machine's Postgres serves (the lattice CA of a test run).
    const OTHER_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT+gAwIBAgIULfkAQGopPAX8c+YQNro6oCFIMaQwCgYIKoZIzj0EAwIw
KDEmMCQGA1UEAwwdcGF0aWVudC1tYW5hZ2VtZW50IGxhdHRpY2UgQ0EwIBcNNzUw
MTAxMDAwMDAwWhgPNDA5NjAxMDEwMDAwMDBaMCgxJjAkBgNVBAMMHXBhdGllbnQt
bWFuYWdlbWVudCBsYXR0aWNlIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
JKmTUiAtQmAWlnm7ogOTg+4+1NlmCeVQ2Xhb/El7Qku5uzW6clIqi2h0YdoH6WI3
ot1COJ+YAqSN9mWvNvApb6NFMEMwDgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBRp
c61/B4Y/B4yuKfjJ1Ki2KsVzojASBgNVHRMBAf8ECDAGAQH/AgEAMAoGCCqGSM49
BAMCA0cAMEQCIAsW2aibY+er7ipLrn283wCAVkImWBwRbIoDjQykM3NJAiBWtCh0
/eU7uFBxHrfTb/qjM6D4ZZBolTm75jk8aNb9IA==
-----END CERTIFICATE-----
";

    #[test]
    fn credentials_and_connection_errors_are_unavailable_not_bad_queries() {
        for code in ["28000", "28P01", "08006", "57P01", "53300", "3D000"] {
            assert!(server_side_trouble(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02"] {
            assert!(!server_side_trouble(code), "{code}");
        }
    }
}
