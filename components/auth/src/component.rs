//! WIT glue: `pm:platform/service` in, `routes::handle` out; the `Store` is Postgres through
//! the `wasmcloud:postgres` link and configuration through wasi:config.
use wasmcloud_component::wasi::config::store as config;

use crate::credentials::Email;
use crate::routes::{self, Attempt, Caller, Store, UserRecord};
use crate::sessions::{FIRST_LOCK_SECS, LOCK_AFTER, LONGEST_LOCK_SECS};
use kit::audit::Entry;
use kit::tokens;

mod bindings {
    wit_bindgen::generate!({
        world: "auth",
        path: "../../wit",
        with: {
            "wasi:config/store@0.2.0-draft": wasmcloud_component::wasi::config::store,
            "wasi:keyvalue/store@0.2.0-draft": wasmcloud_component::wasi::keyvalue::store,
            "pm:platform/types@0.1.0": platform_wit::types,
            "wasmcloud:postgres/types@0.1.1-draft": platform_wit::postgres_types,
        },
        generate_all,
    });
}

use bindings::wasmcloud::postgres::query::query;
use platform_wit::postgres_types::{PgValue, ResultRow};
use platform_wit::sql::{and_audit, answers, describe, param, text};
use wasmcloud_component::wasi::keyvalue::store;

/// The bucket of ended sessions (kit::tokens): entries live for the link's TTL, which is at
/// least a token's lifetime (the manifest), so each outlives every token it ends.
fn sessions() -> Result<store::Bucket, String> {
    store::open(tokens::SESSIONS_BUCKET).map_err(|e| format!("session store: {e:?}"))
}

struct Auth;

bindings::export!(Auth with_types_in bindings);

impl bindings::exports::pm::platform::service::Guest for Auth {
    fn handle(request: platform_wit::types::Request) -> platform_wit::types::Response {
        let caller = request.principal.as_ref().map(|p| Caller {
            subject: p.subject.clone(),
            role: p.role.clone(),
        });
        platform_wit::serve(request, &[("postgres", &|| answers(query))], |request| {
            routes::handle(&Postgres, request, caller.as_ref())
        })
    }
}

struct Postgres;

const USER_COLUMNS: &str = "id::text AS id, email, password_hash, role, enabled::text AS enabled";

fn user(row: &ResultRow) -> Option<UserRecord> {
    Some(UserRecord {
        id: text(row, "id")?,
        email: text(row, "email")?,
        password_hash: text(row, "password_hash")?,
        role: text(row, "role")?,
        enabled: text(row, "enabled")? == "true",
    })
}

fn users(statement: &str, params: &[PgValue]) -> Result<Vec<UserRecord>, String> {
    let rows = query(statement, params).map_err(describe)?;
    Ok(rows.iter().filter_map(user).collect())
}

/// Whether a statement changed a row (it returns one per change).
fn changed(statement: &str, params: &[PgValue]) -> Result<bool, String> {
    Ok(!query(statement, params).map_err(describe)?.is_empty())
}

/// `and_audit`'s CTE for a sign-in's lock or unlock record, written when `cte` has a row.
fn event(entry: Option<&Entry>, cte: &str, params: &mut Vec<PgValue>) -> String {
    and_audit(entry, cte, "NULL", params)
}

impl Store for Postgres {
    fn find(&self, email: &Email) -> Result<Option<UserRecord>, String> {
        let found = users(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = $1"),
            &[param(email.as_str())],
        )?;
        Ok(found.into_iter().next())
    }

    fn find_by_id(&self, id: &str) -> Result<Option<UserRecord>, String> {
        let found = users(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1::uuid"),
            &[param(id)],
        )?;
        Ok(found.into_iter().next())
    }

    fn list(&self) -> Result<Vec<(UserRecord, Option<u64>)>, String> {
        let rows = query(
            "SELECT u.id::text AS id, u.email, u.password_hash, u.role, u.enabled::text AS enabled, \
                    extract(epoch FROM f.locked_until)::int8::text AS locked_until \
                 FROM users u LEFT JOIN login_failures f \
                   ON f.email = lower(u.email) AND f.locked_until > now() \
                 ORDER BY lower(u.email)",
            &[],
        )
        .map_err(describe)?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let locked = text(row, "locked_until").and_then(|t| t.parse().ok());
                Some((user(row)?, locked))
            })
            .collect())
    }

    fn insert(&self, user: &UserRecord, audit: Option<&Entry>) -> Result<bool, String> {
        let mut params = vec![
            param(&user.id),
            param(&user.email),
            param(&user.password_hash),
            param(&user.role),
        ];
        // A user is no patient: the record names none.
        let audit = and_audit(audit, "u", "NULL", &mut params);
        changed(
            &format!(
                "WITH u AS (INSERT INTO users (id, email, password_hash, role) \
                            VALUES ($1::uuid, $2, $3, $4) \
                            ON CONFLICT DO NOTHING RETURNING id){audit} \
                 SELECT id::text AS id FROM u"
            ),
            &params,
        )
    }

    fn set_enabled(&self, id: &str, enabled: bool, audit: Option<&Entry>) -> Result<bool, String> {
        let mut params = vec![param(id), param(&enabled.to_string())];
        let audit = and_audit(audit, "u", "NULL", &mut params);
        // Enabling also lifts a lock: an admin vouched for the account.
        changed(
            &format!(
                "WITH u AS (UPDATE users SET enabled = $2::boolean WHERE id = $1::uuid \
                            RETURNING id, email), \
                      unlocked AS (DELETE FROM login_failures \
                                   WHERE $2::boolean AND email = (SELECT lower(email) FROM u)){audit} \
                 SELECT id::text AS id FROM u"
            ),
            &params,
        )
    }

    fn set_password(&self, id: &str, hash: &str, audit: Option<&Entry>) -> Result<bool, String> {
        let mut params = vec![param(id), param(hash)];
        let audit = and_audit(audit, "u", "NULL", &mut params);
        changed(
            &format!(
                "WITH u AS (UPDATE users SET password_hash = $2 WHERE id = $1::uuid RETURNING id){audit} \
                 SELECT id::text AS id FROM u"
            ),
            &params,
        )
    }

    fn locked_for(&self, email: &Email) -> Result<Option<u64>, String> {
        let rows = query(
            "SELECT ceil(extract(epoch FROM locked_until - now()))::int8::text AS wait \
             FROM login_failures WHERE email = $1 AND locked_until > now()",
            &[param(email.as_str())],
        )
        .map_err(describe)?;
        Ok(rows
            .first()
            .and_then(|row| text(row, "wait"))
            .and_then(|t| t.parse::<u64>().ok())
            .map(|wait| wait.max(1)))
    }

    fn failed(&self, email: &Email, attempt: &Attempt) -> Result<(), String> {
        // The count starts again a day after the last failure; from LOCK_AFTER failures on, each
        // locks the email for FIRST_LOCK_SECS doubled per failure since, at most LONGEST (the
        // policy of sessions::lock_secs, in one statement so concurrent failures all count).
        let mut params = vec![
            param(email.as_str()),
            param(&LOCK_AFTER.to_string()),
            param(&FIRST_LOCK_SECS.to_string()),
            param(&LONGEST_LOCK_SECS.to_string()),
        ];
        let unlock = event(attempt.unlock.as_ref(), "unlocked", &mut params);
        let lock = event(attempt.lock.as_ref(), "locked", &mut params);
        let count =
            "CASE WHEN l.last_failure < now() - interval '1 day' THEN 1 ELSE l.failures + 1 END";
        let statement = format!(
            "WITH prev AS (SELECT locked_until FROM login_failures WHERE email = $1), \
                  f AS (INSERT INTO login_failures AS l (email, failures, last_failure) \
                        VALUES ($1, 1, now()) \
                        ON CONFLICT (email) DO UPDATE SET failures = {count}, last_failure = now(), \
                          locked_until = CASE WHEN {count} >= $2::int4 THEN now() + make_interval( \
                            secs => least($4::float8, $3::float8 * power(2, {count} - $2::int4))) END \
                        RETURNING failures, locked_until), \
                  unlocked AS (SELECT 1 FROM prev WHERE locked_until IS NOT NULL), \
                  locked AS (SELECT 1 FROM f WHERE locked_until IS NOT NULL){unlock}{lock} \
             SELECT failures::text AS failures FROM f"
        );
        query(&statement, &params).map(|_| ()).map_err(describe)
    }

    fn succeeded(&self, email: &Email, attempt: &Attempt) -> Result<(), String> {
        let mut params = vec![param(email.as_str())];
        let unlock = event(attempt.unlock.as_ref(), "unlocked", &mut params);
        let statement = format!(
            "WITH gone AS (DELETE FROM login_failures WHERE email = $1 RETURNING locked_until), \
                  unlocked AS (SELECT 1 FROM gone WHERE locked_until IS NOT NULL){unlock} \
             SELECT count(*)::text AS n FROM gone"
        );
        query(&statement, &params).map(|_| ()).map_err(describe)
    }

    fn end_token(&self, jti: &str) -> Result<(), String> {
        sessions()?
            .set(&tokens::ended_key(jti), b"1")
            .map_err(|e| format!("{e:?}"))
    }

    fn end_sessions(&self, subject: &str, from: u64) -> Result<(), String> {
        sessions()?
            .set(
                &tokens::ended_before_key(subject),
                from.to_string().as_bytes(),
            )
            .map_err(|e| format!("{e:?}"))
    }

    fn sessions_from(&self, subject: &str) -> Result<Option<u64>, String> {
        let value = sessions()?
            .get(&tokens::ended_before_key(subject))
            .map_err(|e| format!("{e:?}"))?;
        Ok(value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok()))
    }

    fn config(&self, key: &str) -> Option<String> {
        config::get(key).ok().flatten()
    }

    fn secret(&self, key: &str) -> Option<String> {
        platform_wit::secrets::text(key)
    }

    fn new_id(&self) -> String {
        platform_wit::new_id()
    }
}
