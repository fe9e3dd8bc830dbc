//! WIT glue: `pm:platform/service` in, `routes::handle` out; the `Store` is Postgres through
//! the `wasmcloud:postgres` link and configuration through wasi:config.
use wasmcloud_component::wasi::config::store as config;

use crate::credentials::Email;
use crate::routes::{self, Caller, Store, UserRecord};
use kit::audit::Entry;

mod bindings {
    wit_bindgen::generate!({
        world: "auth",
        path: "../../wit",
        with: {
            "wasi:config/store@0.2.0-draft": wasmcloud_component::wasi::config::store,
            "pm:platform/types@0.1.0": platform_wit::types,
            "wasmcloud:postgres/types@0.1.1-draft": platform_wit::postgres_types,
        },
        generate_all,
    });
}

use bindings::wasmcloud::postgres::query::query;
use platform_wit::postgres_types::PgValue;
use platform_wit::sql::{and_audit, answers, describe, text};

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

impl Store for Postgres {
    fn find(&self, email: &Email) -> Result<Option<UserRecord>, String> {
        let rows = query(
            "SELECT id::text AS id, email, password_hash, role FROM users WHERE lower(email) = $1",
            &[PgValue::Text(email.as_str().to_string())],
        )
        .map_err(describe)?;
        Ok(rows.first().and_then(|row| {
            Some(UserRecord {
                id: text(row, "id")?,
                email: text(row, "email")?,
                password_hash: text(row, "password_hash")?,
                role: text(row, "role")?,
            })
        }))
    }

    fn insert(&self, user: &UserRecord, audit: Option<&Entry>) -> Result<bool, String> {
        let mut params = vec![
            PgValue::Text(user.id.clone()),
            PgValue::Text(user.email.clone()),
            PgValue::Text(user.password_hash.clone()),
            PgValue::Text(user.role.clone()),
        ];
        // A user is no patient: the record names none.
        let audit = and_audit(audit, "u", "NULL", &mut params);
        let statement = format!(
            "WITH u AS (INSERT INTO users (id, email, password_hash, role) \
                        VALUES ($1::uuid, $2, $3, $4) \
                        ON CONFLICT DO NOTHING RETURNING id){audit} \
             SELECT id::text AS id FROM u"
        );
        let rows = query(&statement, &params).map_err(describe)?;
        Ok(!rows.is_empty())
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
