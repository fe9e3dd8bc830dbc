//! Typed SQL over HTTP for tests: a parameter is `{"type": "...", "value": ...}` and every
//! returned column comes back the same way, so a test can check each type round-trips exactly.
use http::StatusCode;
use kit::{pg_float, response, Problem};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::component::bindings::pm::platform::sql_transaction::{self, Statement};
use crate::component::bindings::wasmcloud::postgres::query;
use crate::component::bindings::wasmcloud::postgres::types::{
    Date, Offset, PgValue, QueryError, ResultRow, Time, Timestamp, TimestampTz,
};

#[derive(Deserialize)]
pub struct Typed {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
pub struct Query {
    sql: String,
    #[serde(default)]
    params: Vec<Typed>,
}

#[derive(Deserialize)]
pub struct Transaction {
    statements: Vec<Query>,
}

fn bad(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, detail)
}

fn query_problem(e: QueryError) -> Problem {
    match e {
        QueryError::InvalidParams(m) | QueryError::InvalidQuery(m) => bad(m),
        QueryError::Unexpected(m) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

fn ymd(text: &str) -> Result<(i32, u32, u32), Problem> {
    let parts: Vec<&str> = text.split('-').collect();
    match parts.as_slice() {
        [y, m, d] => Ok((
            y.parse().map_err(|_| bad("bad year"))?,
            m.parse().map_err(|_| bad("bad month"))?,
            d.parse().map_err(|_| bad("bad day"))?,
        )),
        _ => Err(bad(format!("`{text}` is not YYYY-MM-DD"))),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` (UTC only: enough for tests).
fn utc_timestamp(text: &str) -> Result<TimestampTz, Problem> {
    let body = text
        .strip_suffix('Z')
        .ok_or_else(|| bad("timestamps must be UTC (end in Z)"))?;
    let (date, time) = body
        .split_once('T')
        .ok_or_else(|| bad("timestamp needs a T"))?;
    let (hms, micro) = time.split_once('.').unwrap_or((time, "0"));
    let hms: Vec<u32> = hms
        .split(':')
        .map(|p| p.parse().map_err(|_| bad("bad time")))
        .collect::<Result<_, _>>()?;
    let [hour, min, sec] = hms[..] else {
        return Err(bad("time must be HH:MM:SS"));
    };
    let micro: u32 = format!("{micro:0<6}")[..6]
        .parse()
        .map_err(|_| bad("bad fraction"))?;
    Ok(TimestampTz {
        timestamp: Timestamp {
            date: Date::Ymd(ymd(date)?),
            time: Time {
                hour,
                min,
                sec,
                micro,
            },
        },
        offset: Offset::EasternHemisphereSecs(0),
    })
}

fn to_pg(typed: Typed) -> Result<PgValue, Problem> {
    let v = &typed.value;
    let text = || {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(format!("{} needs a string", typed.kind)))
    };
    let int = || {
        v.as_i64()
            .ok_or_else(|| bad(format!("{} needs an integer", typed.kind)))
    };
    Ok(match typed.kind.as_str() {
        "null" => PgValue::Null,
        "text" => PgValue::Text(text()?),
        "int8" => PgValue::BigInt(int()?),
        "int4" => PgValue::Integer(i32::try_from(int()?).map_err(|_| bad("int4 out of range"))?),
        "int2" => PgValue::SmallInt(i16::try_from(int()?).map_err(|_| bad("int2 out of range"))?),
        "float8" => PgValue::Double(pg_float::to_parts(
            v.as_f64().ok_or_else(|| bad("float8 needs a number"))?,
        )),
        "bool" => PgValue::Bool(v.as_bool().ok_or_else(|| bad("bool needs true/false"))?),
        "uuid" => PgValue::Uuid(text()?),
        "date" => PgValue::Date(Date::Ymd(ymd(&text()?)?)),
        "timestamptz" => PgValue::TimestampTz(utc_timestamp(&text()?)?),
        "json" => PgValue::Jsonb(v.to_string()),
        "bytea" => PgValue::Bytea(
            v.as_array()
                .ok_or_else(|| bad("bytea needs an array of bytes"))?
                .iter()
                .map(|b| {
                    b.as_u64()
                        .and_then(|b| u8::try_from(b).ok())
                        .ok_or_else(|| bad("bytes are 0..=255"))
                })
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(bad(format!("unknown parameter type {other}"))),
    })
}

fn from_pg(value: PgValue) -> Value {
    let (kind, value) = match value {
        PgValue::Null => ("null", Value::Null),
        PgValue::Text(s) => ("text", json!(s)),
        PgValue::BigInt(i) => ("int8", json!(i)),
        PgValue::Integer(i) => ("int4", json!(i)),
        PgValue::SmallInt(i) => ("int2", json!(i)),
        PgValue::Double(f) => ("float8", json!(pg_float::from_parts(f))),
        PgValue::Bool(b) => ("bool", json!(b)),
        PgValue::Uuid(u) => ("uuid", json!(u)),
        PgValue::Date(Date::Ymd((y, m, d))) => ("date", json!(format!("{y:04}-{m:02}-{d:02}"))),
        PgValue::TimestampTz(TimestampTz {
            timestamp:
                Timestamp {
                    date: Date::Ymd((y, mo, d)),
                    time,
                },
            ..
        }) => (
            "timestamptz",
            json!(format!(
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
                time.hour, time.min, time.sec, time.micro
            )),
        ),
        PgValue::Jsonb(s) | PgValue::Json(s) => {
            ("json", serde_json::from_str(&s).unwrap_or(Value::Null))
        }
        PgValue::Bytea(b) => ("bytea", json!(b)),
        other => ("other", json!(format!("{other:?}"))),
    };
    json!({ "type": kind, "value": value })
}

fn rows_json(rows: Vec<ResultRow>) -> Value {
    Value::Array(
        rows.into_iter()
            .map(|row| {
                Value::Object(
                    row.into_iter()
                        .map(|e| (e.column_name, from_pg(e.value)))
                        .collect::<Map<_, _>>(),
                )
            })
            .collect(),
    )
}

fn params(typed: Vec<Typed>) -> Result<Vec<PgValue>, Problem> {
    typed.into_iter().map(to_pg).collect()
}

pub fn query(q: Query) -> Result<http::Response<Vec<u8>>, Problem> {
    let rows = query::query(&q.sql, &params(q.params)?).map_err(query_problem)?;
    Ok(response::json(
        StatusCode::OK,
        &json!({ "rows": rows_json(rows) }),
    ))
}

pub fn transaction(t: Transaction) -> Result<http::Response<Vec<u8>>, Problem> {
    let statements = t
        .statements
        .into_iter()
        .map(|q| {
            Ok(Statement {
                sql: q.sql,
                params: params(q.params)?,
            })
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    let results = sql_transaction::execute(&statements).map_err(query_problem)?;
    let results: Vec<Value> = results.into_iter().map(rows_json).collect();
    Ok(response::json(
        StatusCode::OK,
        &json!({ "results": results }),
    ))
}
