//! Least privilege in the data stores (issue 18, item 3). Each service reaches Postgres as a role
//! of its own that owns its schema and nothing else: patients cannot read auth's users. The
//! platform reaches Redis as an ACL user that may touch only keys under its prefix. `up` and every
//! test stack make them on the machine's servers (as the superuser and the default user, which
//! only this tool uses), idempotently; the passwords are made once per stack (mode 600) and reach
//! the providers only as secrets (secret_store.rs). A test stack's roles and user go with its
//! data (`Stack::drop_data`).
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::process::run_with_input;
use crate::secret_store::Secret;
use crate::security::{kept_private, random_hex, write_private};
use crate::stack::Stack;
use crate::{manifest, step};

/// The services with a schema (and a Postgres role) of their own.
pub const SERVICES: [&str; 6] = [
    "auth",
    "patients",
    "billing",
    "appointments",
    "analytics",
    "audit",
];

/// The services that write audit records themselves, in the transaction of the change they
/// record (the audit service writes everyone else's); they may only INSERT into the trail.
const AUDIT_WRITERS: [&str; 4] = ["auth", "patients", "appointments", "audit"];

/// The audit trail's schema, functions and triggers (issue 20), run as the superuser.
const AUDIT_TRAIL_SQL: &str = include_str!("../../../components/audit/trail.sql");

/// `sql` run by psql as the superuser in `database`, fed on stdin (so no password is in argv),
/// stopping at the first error. Returns what it printed (unaligned, tuples only).
pub(crate) fn psql(database: &str, sql: &str) -> Result<String> {
    let out = run_with_input(
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-p"])
            .arg(manifest::DEFAULT_POSTGRES_PORT.to_string())
            .args(["-U", "postgres", "-d", database])
            .args(["-v", "ON_ERROR_STOP=1", "-qtA", "-f", "-"]),
        sql.as_bytes(),
    )
    .with_context(|| format!("psql in {database} (psql is needed to make the services' roles)"))?;
    Ok(out.trim().to_string())
}

/// `redis-cli` as the default user with `args`, the secret parts fed on stdin (`-x` appends it
/// as the last argument).
pub(crate) fn redis_cli(args: &[&str], last: Option<&str>) -> Result<String> {
    let mut command = Command::new("redis-cli");
    command
        .args(["-h", "127.0.0.1", "-p"])
        .arg(manifest::DEFAULT_REDIS_PORT.to_string());
    if last.is_some() {
        command.arg("-x");
    }
    command.args(args);
    let out = run_with_input(&mut command, last.unwrap_or_default().as_bytes())
        .context("redis-cli is needed to make the platform's Redis user")?;
    let out = out.trim().to_string();
    // redis-cli exits 0 on most server errors; the answer says.
    if out.starts_with("ERR") || out.starts_with("(error)") {
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

/// One of the two login roles of a service. They take turns: a password rotation gives the
/// one not in use a new password and moves the providers to it, while the other's sessions
/// finish their work (rotation.rs). Postgres has one password per role, so one role could not
/// change its password without refusing new connections until every provider had the new one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Login {
    A,
    B,
}

impl Login {
    pub fn suffix(self) -> &'static str {
        match self {
            Login::A => "a",
            Login::B => "b",
        }
    }

    pub fn other(self) -> Self {
        match self {
            Login::A => Login::B,
            Login::B => Login::A,
        }
    }
}

impl Stack {
    /// The Postgres role of `service` on this stack, owner of its schema (roles belong to the
    /// server, so each stack's carry its database's name). No one logs in as it.
    pub(crate) fn database_role(&self, service: &str) -> String {
        format!("{}_{service}", self.config.database)
    }

    /// A login role of `service`: a member of its role, which every session becomes at once
    /// (`ALTER ROLE ... SET role`), so what it makes belongs to the service's role.
    pub(crate) fn login_role(&self, service: &str, login: Login) -> String {
        format!("{}_{}", self.database_role(service), login.suffix())
    }

    /// The login role `service`'s providers use now (kept beside its password).
    pub(crate) fn active_login(&self, service: &str) -> Result<Login> {
        let path = self.secret_store_dir()?.join(format!("{service}-db.login"));
        Ok(match kept_private(&path, || Ok("a".into()))?.as_str() {
            "b" => Login::B,
            _ => Login::A,
        })
    }

    pub(crate) fn set_active_login(&self, service: &str, login: Login) -> Result<()> {
        let path = self.secret_store_dir()?.join(format!("{service}-db.login"));
        write_private(&path, login.suffix())
    }

    /// The platform's Redis user on this stack: its key prefix, without the colon.
    pub(crate) fn redis_user(&self) -> String {
        self.config.key_prefix.trim_end_matches(':').to_string()
    }

    pub(crate) fn password_file(&self, name: &str) -> Result<std::path::PathBuf> {
        Ok(self.secret_store_dir()?.join(format!("{name}.password")))
    }

    /// A password of this stack's data stores, made once and kept (mode 600).
    fn store_password(&self, name: &str) -> Result<String> {
        kept_private(&self.password_file(name)?, || random_hex(16))
    }

    /// Replaces a kept password with a new one, returned.
    pub(crate) fn new_store_password(&self, name: &str) -> Result<String> {
        let password = random_hex(16)?;
        write_private(&self.password_file(name)?, &password)?;
        Ok(password)
    }

    /// The name a login role's password is kept under.
    pub(crate) fn database_password_name(service: &str, login: Login) -> String {
        format!("{service}-db-{}", login.suffix())
    }

    /// The password of `service`'s login role in use.
    fn database_password(&self, service: &str) -> Result<String> {
        let login = self.active_login(service)?;
        self.store_password(&Self::database_password_name(service, login))
    }

    /// The password of the platform's Redis user.
    pub(crate) fn redis_password(&self) -> Result<String> {
        self.store_password("redis")
    }

    /// Redis' URL with the platform's user and `password`.
    pub(crate) fn redis_url(&self, password: &str) -> String {
        format!(
            "redis://{}:{password}@{}:{}/0",
            self.redis_user(),
            self.own_ip(),
            self.config.redis_port
        )
    }

    /// The secrets the providers need to reach the stores: each service's login role in use and
    /// its password, Redis' URL with the platform's user and password.
    pub(crate) fn store_secrets(&self) -> Result<Vec<(Secret, String)>> {
        let mut secrets = Vec::new();
        for service in SERVICES {
            let login = self.active_login(service)?;
            secrets.push((
                Secret::DatabaseUser(service),
                self.login_role(service, login),
            ));
            secrets.push((
                Secret::DatabasePassword(service),
                self.database_password(service)?,
            ));
        }
        secrets.push((Secret::RedisUrl, self.redis_url(&self.redis_password()?)));
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
            let active = self.active_login(service)?;
            let password = self.database_password(service)?;
            let (a, b) = (
                self.login_role(service, Login::A),
                self.login_role(service, Login::B),
            );
            let (on, off) = (
                self.login_role(service, active),
                self.login_role(service, active.other()),
            );
            sql += &format!(
                "DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role}; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{a}') THEN CREATE ROLE {a}; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{b}') THEN CREATE ROLE {b}; END IF;
END $$;
ALTER ROLE {role} WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD NULL;
ALTER ROLE {on} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD '{password}';
ALTER ROLE {off} WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD NULL;
GRANT {role} TO {a}, {b};
ALTER ROLE {a} SET role = '{role}';
ALTER ROLE {b} SET role = '{role}';
GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role}, {a}, {b};
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
        sql += &self.audit_trail_sql();
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

    /// The owner of the audit trail: no one logs in as it, so no service can change a record.
    pub(crate) fn audit_trail_owner(&self) -> String {
        format!("{}_audit_trail", self.config.database)
    }

    /// The audit trail, owned by `audit_trail_owner`; the writers may insert, the audit service
    /// may also read, verify and link pending records into the chain.
    fn audit_trail_sql(&self) -> String {
        let owner = self.audit_trail_owner();
        let mut sql = format!(
            "DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') THEN CREATE ROLE {owner}; END IF;
END $$;
ALTER ROLE {owner} WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD NULL;
{}",
            AUDIT_TRAIL_SQL.replace(":owner", &owner)
        );
        for service in AUDIT_WRITERS {
            let role = self.database_role(service);
            sql += &format!(
                "GRANT USAGE ON SCHEMA audit_trail TO {role};
GRANT INSERT ON audit_trail.records TO {role};
"
            );
        }
        let reader = self.database_role("audit");
        sql += &format!(
            "GRANT SELECT ON audit_trail.records TO {reader};
GRANT EXECUTE ON FUNCTION audit_trail.verify() TO {reader};
GRANT EXECUTE ON FUNCTION audit_trail.chain_pending(integer) TO {reader};
"
        );
        sql
    }

    /// Checks the audit trail's chain end to end (`audit_trail.verify()`, as the superuser): what
    /// it found when the chain is whole, an error naming the first record that is not.
    pub(crate) fn verify_audit_trail(&self) -> Result<String> {
        let found = psql(
            &self.config.database,
            "SELECT concat_ws('|', valid::text, checked, coalesce(bad_seq::text, ''), coalesce(problem, ''), \
                    coalesce(head_seq::text, ''), coalesce(head_hash, '')) FROM audit_trail.verify();",
        )?;
        let fields: Vec<&str> = found.split('|').collect();
        let [valid, checked, bad, problem, head, hash] = fields[..] else {
            bail!("the verification answered `{found}`");
        };
        if valid != "true" {
            bail!("audit trail broken at record {bad}: {problem} ({checked} records checked)");
        }
        Ok(if head.is_empty() {
            "audit trail: empty".to_string()
        } else {
            format!("audit trail whole: {checked} records checked; newest is record {head}, hash {hash} (keep it to compare later: removing the newest records leaves a shorter chain that is still whole)")
        })
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
        let roles: Vec<String> = SERVICES
            .iter()
            .flat_map(|s| {
                [
                    self.login_role(s, Login::A),
                    self.login_role(s, Login::B),
                    self.database_role(s),
                ]
            })
            .chain([self.audit_trail_owner()])
            .collect();
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
