//! WIT glue and SQL: `pm:platform/billing` for patients, `pm:platform/service` for the gateway.
use kit::fields::parse_uuid;

use crate::routes::{self, Account, Accounts};

mod bindings {
    wit_bindgen::generate!({
        world: "billing-service",
        path: "../../wit",
        with: {
            "pm:platform/types@0.1.0": platform_wit::types,
            "wasmcloud:postgres/types@0.1.1-draft": platform_wit::postgres_types,
        },
        generate_all,
    });
}

use bindings::exports::pm::platform::billing::{self as api, BillingError};
use bindings::wasmcloud::postgres::query::query;
use platform_wit::postgres_types::{QueryError, ResultRow};
use platform_wit::sql::{answers, describe, param, text};

struct Billing;

bindings::export!(Billing with_types_in bindings);

const COLUMNS: &str = "account_id::text AS account_id, patient_id::text AS patient_id, status, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at";

fn account(row: &ResultRow) -> Option<Account> {
    Some(Account {
        account_id: text(row, "account_id")?,
        patient_id: text(row, "patient_id")?,
        status: text(row, "status")?,
        created_at: text(row, "created_at")?,
    })
}

fn to_api(a: Account) -> api::Account {
    api::Account {
        account_id: a.account_id,
        patient_id: a.patient_id,
        status: a.status,
        created_at: a.created_at,
    }
}

fn unavailable(e: QueryError) -> BillingError {
    BillingError::Unavailable(describe(e))
}

fn patient_id(raw: &str) -> Result<String, BillingError> {
    parse_uuid(raw)
        .ok_or_else(|| BillingError::Invalid(format!("`{raw}` is not a patient id (UUID)")))
}

/// The first row as an account, or `NotFound`.
fn one(rows: Result<Vec<ResultRow>, QueryError>) -> Result<api::Account, BillingError> {
    rows.map_err(unavailable)?
        .first()
        .and_then(account)
        .map(to_api)
        .ok_or(BillingError::NotFound)
}

impl api::Guest for Billing {
    fn create_account(
        patient: String,
        name: String,
        email: String,
    ) -> Result<api::Account, BillingError> {
        let patient = patient_id(&patient)?;
        // Idempotent: a second call finds the account the first one opened.
        let statement = format!(
            "WITH opened AS (INSERT INTO accounts (account_id, patient_id, name, email) \
                             VALUES (gen_random_uuid(), $1::uuid, $2, $3) \
                             ON CONFLICT (patient_id) DO NOTHING RETURNING *) \
             SELECT {COLUMNS} FROM opened \
             UNION ALL SELECT {COLUMNS} FROM accounts WHERE patient_id = $1::uuid"
        );
        one(query(
            &statement,
            &[param(&patient), param(&name), param(&email)],
        ))
    }

    fn open_accounts(accounts: Vec<api::NewAccount>) -> Result<u32, BillingError> {
        let rows = accounts
            .iter()
            .map(|a| {
                Ok(serde_json::json!({
                    "patient_id": patient_id(&a.patient_id)?,
                    "name": a.name,
                    "email": a.email,
                }))
            })
            .collect::<Result<Vec<_>, BillingError>>()?;
        if rows.is_empty() {
            return Ok(0);
        }
        // One parameter for the whole batch (a JSON array), so its size does not change the
        // statement's text and the provider's prepared statement is reused.
        let opened = query(
            "WITH opened AS (INSERT INTO accounts (account_id, patient_id, name, email) \
                             SELECT gen_random_uuid(), patient_id, name, email \
                             FROM jsonb_to_recordset($1::jsonb) AS t(patient_id uuid, name text, email text) \
                             ON CONFLICT (patient_id) DO NOTHING RETURNING 1) \
             SELECT count(*)::text AS opened FROM opened",
            &[param(&serde_json::Value::Array(rows).to_string())],
        )
        .map_err(unavailable)?;
        Ok(opened
            .first()
            .and_then(|row| text(row, "opened"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    fn get_account(patient: String) -> Result<api::Account, BillingError> {
        let patient = patient_id(&patient)?;
        Postgres
            .get(&patient)
            .map_err(BillingError::Unavailable)?
            .map(to_api)
            .ok_or(BillingError::NotFound)
    }

    fn close_account(patient: String) -> Result<api::Account, BillingError> {
        let patient = patient_id(&patient)?;
        let statement = format!(
            "UPDATE accounts SET status = 'CLOSED', closed_at = COALESCE(closed_at, now()) \
             WHERE patient_id = $1::uuid RETURNING {COLUMNS}"
        );
        one(query(&statement, &[param(&patient)]))
    }
}

impl bindings::exports::pm::platform::service::Guest for Billing {
    fn handle(request: platform_wit::types::Request) -> platform_wit::types::Response {
        platform_wit::serve(request, &[("postgres", &|| answers(query))], |request| {
            routes::handle(&Postgres, request)
        })
    }
}

struct Postgres;

impl Accounts for Postgres {
    fn get(&self, patient: &str) -> Result<Option<Account>, String> {
        let rows = query(
            &format!("SELECT {COLUMNS} FROM accounts WHERE patient_id = $1::uuid"),
            &[param(patient)],
        )
        .map_err(describe)?;
        Ok(rows.first().and_then(account))
    }
}
