//! Least privilege in the data stores (issue 18, item 3). Each service reaches Postgres as a role
//! of its own that owns its schema and nothing else: patients cannot read auth's users. The
//! platform reaches Redis as an ACL user that may touch only keys under its prefix. `up` and every
//! test stack make them on the machine's servers (as the superuser and the default user, which
//! only this tool uses), idempotently; the passwords are made once per stack (mode 600) and reach
//! the providers only as secrets (secret_store.rs). A test stack's roles and user go with its
//! data (`Stack::drop_data`).
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::secret_store::Secret;
use crate::security::{kept_private, random_hex};
use crate::stack::Stack;
use crate::{manifest, step};

/// The services with a schema (and a Postgres role) of their own.
pub const SERVICES: [&str; 5] = ["auth", "patients", "billing", "appointments", "analytics"];

/// `sql` run by psql as the superuser in `database`, fed on stdin (so no password is in argv),
/// stopping at the first error. Returns what it printed (unaligned, tuples only).
fn psql(database: &str, sql: &str) -> Result<String> {
    let mut child = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p"])
        .arg(manifest::DEFAULT_POSTGRES_PORT.to_string())
        .args(["-U", "postgres", "-d", database])
        .args(["-v", "ON_ERROR_STOP=1", "-qtA", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("psql is needed to make the services' roles")?;
    child
        .stdin
        .take()
        .context("psql's stdin")?
        .write_all(sql.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "psql in {database} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// `redis-cli` as the default user with `args`, the secret parts fed on stdin (`-x` appends it
/// as the last argument).
fn redis_cli(args: &[&str], last: Option<&str>) -> Result<String> {
    let mut command = Command::new("redis-cli");
    command
        .args(["-h", "127.0.0.1", "-p"])
        .arg(manifest::DEFAULT_REDIS_PORT.to_string());
    if last.is_some() {
        command.arg("-x");
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("redis-cli is needed to make the platform's Redis user")?;
    if let Some(last) = last {
        child
            .stdin
            .take()
            .context("redis-cli's stdin")?
            .write_all(last.as_bytes())?;
    }
    drop(child.stdin.take());
    let output = child.wait_with_output()?;
    let out = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || out.starts_with("ERR") || out.starts_with("(error)") {
        bail!("redis-cli {} failed: {out}", args.join(" "));
    }
    Ok(out)
}

/// Gives every object in `schema` to `role` (a schema made by an earlier version, when the
/// superuser ran the migrations, keeps its tables otherwise). Sequences that belong to a column
/// move with their table.
fn owned_by(schema: &str, role: &str) -> String {
    format!(
        "DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT c.relname, c.relkind FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
  LOOP
    EXECUTE format('ALTER %s {schema}.%I OWNER TO {role}',
      CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
        WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.relname);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = '{schema}' AND p.prokind IN ('f', 'p')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO {role}', r.f);
  END LOOP;
END $$;
"
    )
}

impl Stack {
    /// The Postgres role of `service` on this stack (roles belong to the server, so each
    /// stack's carry its database's name).
    pub(crate) fn database_role(&self, service: &str) -> String {
        format!("{}_{service}", self.config.database)
    }

    /// The platform's Redis user on this stack: its key prefix, without the colon.
    pub(crate) fn redis_user(&self) -> String {
        self.config.key_prefix.trim_end_matches(':').to_string()
    }

    /// A password of this stack's data stores, made once and kept (mode 600).
    fn store_password(&self, name: &str) -> Result<String> {
        let path = self.secret_store_dir()?.join(format!("{name}.password"));
        kept_private(&path, || random_hex(16))
    }

    /// The password of `service`'s Postgres role.
    fn database_password(&self, service: &str) -> Result<String> {
        self.store_password(&format!("{service}-db"))
    }

    /// The password of the platform's Redis user.
    pub(crate) fn redis_password(&self) -> Result<String> {
        self.store_password("redis")
    }

    /// The secrets the providers need to reach the stores: each role's password, Redis' URL
    /// with the platform's user and password.
    pub(crate) fn store_secrets(&self) -> Result<Vec<(Secret, String)>> {
        let mut secrets = Vec::new();
        for service in SERVICES {
            secrets.push((
                Secret::DatabasePassword(service),
                self.database_password(service)?,
            ));
        }
        secrets.push((
            Secret::RedisUrl,
            format!(
                "redis://{}:{}@127.0.0.1:{}/0",
                self.redis_user(),
                self.redis_password()?,
                self.config.redis_port
            ),
        ));
        Ok(secrets)
    }

    /// The stack's database, a role per service owning its schema, and the platform's Redis
    /// user. Returns `store_secrets`.
    pub(crate) fn ensure_store_roles(&self) -> Result<Vec<(Secret, String)>> {
        let database = &self.config.database;
        step(&format!(
            "making a Postgres role per service in `{database}` and the Redis user `{}`",
            self.redis_user()
        ));
        let exists = psql(
            "postgres",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{database}';"),
        )?;
        if exists != "1" {
            psql("postgres", &format!("CREATE DATABASE {database};"))?;
        }
        // Only the services' roles (and the superuser) may connect to the stack's database.
        let mut sql = format!("REVOKE ALL ON DATABASE {database} FROM PUBLIC;\n");
        for service in SERVICES {
            let role = self.database_role(service);
            let password = self.database_password(service)?;
            sql += &format!(
                "DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role}; END IF;
END $$;
ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD '{password}';
GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role};
CREATE SCHEMA IF NOT EXISTS {service} AUTHORIZATION {role};
ALTER SCHEMA {service} OWNER TO {role};
REVOKE ALL ON SCHEMA {service} FROM PUBLIC;
{}",
                owned_by(service, &role)
            );
        }
        // appointments' exclusion constraint needs btree_gist; creating an extension is the
        // superuser's (the migration's own CREATE EXTENSION then finds it there).
        sql += "CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA appointments;\n";
        psql(database, &sql)?;

        let user = self.redis_user();
        let password = self.redis_password()?;
        // Every command but the dangerous ones (FLUSHALL, KEYS, CONFIG, ...), on keys under the
        // prefix only. The password goes on stdin (`-x`), not in argv.
        redis_cli(
            &[
                "ACL",
                "SETUSER",
                &user,
                "reset",
                "on",
                &format!("~{}*", self.config.key_prefix),
                "resetchannels",
                "+@all",
                "-@dangerous",
            ],
            Some(&format!(">{password}")),
        )?;
        self.store_secrets()
    }

    /// Removes the stack's database, then its roles (a role that owns something cannot go) and
    /// its Redis user.
    pub(crate) fn drop_database_and_roles(&self) {
        let database = &self.config.database;
        let dropped = psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE);"),
        );
        if let Err(e) = dropped {
            step(&format!("could not drop test database {database}: {e:#}"));
        }
        let roles: Vec<String> = SERVICES.iter().map(|s| self.database_role(s)).collect();
        let dropped = psql(
            "postgres",
            &format!("DROP ROLE IF EXISTS {};", roles.join(", ")),
        );
        if let Err(e) = dropped {
            step(&format!("could not drop the test roles: {e:#}"));
        }
        if let Err(e) = redis_cli(&["ACL", "DELUSER", &self.redis_user()], None) {
            step(&format!("could not remove the test Redis user: {e:#}"));
        }
    }
}
