//! `wasmcloud:postgres` values ↔ sqlx. The provider supports the types the platform uses (text,
//! integers, floats, bool, uuid, date, timestamp(tz), json(b), bytea, null); any other value or
//! column type is refused with a message naming it, never silently mangled.
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use kit::pg_float::{from_parts, to_parts};
use sqlx::postgres::{PgArguments, PgRow, PgTypeInfo, PgValueRef};
use sqlx::{Column, Decode, Encode, Postgres, Row, Type, TypeInfo, ValueRef};

use crate::bindings::wasmcloud::postgres::types::{
    Date, Offset, PgValue, ResultRowEntry, Time, Timestamp, TimestampTz,
};

pub type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// A NULL parameter of no particular type: sent with type oid 0 so Postgres infers the type
/// from the statement, the way an untyped literal NULL works in SQL.
struct UntypedNull;

impl Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

fn date_from(date: &Date) -> Result<NaiveDate, String> {
    match date {
        Date::Ymd((y, m, d)) => NaiveDate::from_ymd_opt(*y, *m, *d)
            .ok_or_else(|| format!("{y:04}-{m:02}-{d:02} is not a calendar date")),
        _ => Err("infinite dates are not supported".into()),
    }
}

fn time_from(time: &Time) -> Result<NaiveTime, String> {
    NaiveTime::from_hms_micro_opt(time.hour, time.min, time.sec, time.micro).ok_or_else(|| {
        format!(
            "{}:{}:{}.{} is not a time of day",
            time.hour, time.min, time.sec, time.micro
        )
    })
}

fn timestamp_from(ts: &Timestamp) -> Result<NaiveDateTime, String> {
    Ok(NaiveDateTime::new(
        date_from(&ts.date)?,
        time_from(&ts.time)?,
    ))
}

fn date_to(date: NaiveDate) -> Date {
    Date::Ymd((date.year(), date.month(), date.day()))
}

fn timestamp_to(ts: NaiveDateTime) -> Timestamp {
    Timestamp {
        date: date_to(ts.date()),
        time: Time {
            hour: ts.hour(),
            min: ts.minute(),
            sec: ts.second(),
            micro: ts.nanosecond() / 1000,
        },
    }
}

/// Binds one parameter, or says why it cannot be.
pub fn bind<'q>(query: Query<'q>, value: PgValue) -> Result<Query<'q>, String> {
    Ok(match value {
        PgValue::Null => query.bind(UntypedNull),
        PgValue::BigInt(v) | PgValue::Int8(v) | PgValue::BigSerial(v) | PgValue::Serial8(v) => {
            query.bind(v)
        }
        PgValue::Integer(v) | PgValue::Int(v) | PgValue::Int4(v) => query.bind(v),
        PgValue::SmallInt(v) | PgValue::Int2(v) | PgValue::SmallSerial(v) | PgValue::Serial2(v) => {
            query.bind(v)
        }
        PgValue::Serial(v) | PgValue::Serial4(v) => {
            query.bind(i32::try_from(v).map_err(|_| format!("serial {v} is out of range"))?)
        }
        PgValue::Bool(v) | PgValue::Boolean(v) => query.bind(v),
        PgValue::Double(v) | PgValue::Float8(v) => query.bind(from_parts(v)),
        PgValue::Real(v) | PgValue::Float4(v) => query.bind(from_parts(v) as f32),
        PgValue::Text(v) | PgValue::Name(v) | PgValue::Xml(v) => query.bind(v),
        PgValue::Varchar((_, bytes)) | PgValue::Char((_, bytes)) => query.bind(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| "varchar value is not UTF-8".to_string())?,
        ),
        PgValue::Uuid(v) => {
            query.bind(uuid::Uuid::parse_str(&v).map_err(|e| format!("`{v}` is not a UUID: {e}"))?)
        }
        PgValue::Date(d) => query.bind(date_from(&d)?),
        PgValue::Time(t) => query.bind(time_from(&t)?),
        PgValue::Timestamp(ts) => query.bind(timestamp_from(&ts)?),
        PgValue::TimestampTz(TimestampTz { timestamp, offset }) => {
            let seconds = match offset {
                Offset::EasternHemisphereSecs(s) => i64::from(s),
                Offset::WesternHemisphereSecs(s) => -i64::from(s),
            };
            let local = timestamp_from(&timestamp)?;
            let utc = local - chrono::Duration::seconds(seconds);
            query.bind(DateTime::<Utc>::from_naive_utc_and_offset(utc, Utc))
        }
        PgValue::Json(v) | PgValue::Jsonb(v) => query.bind(
            serde_json::from_str::<serde_json::Value>(&v)
                .map_err(|e| format!("invalid JSON: {e}"))?,
        ),
        PgValue::Bytea(v) => query.bind(v.to_vec()),
        PgValue::TextArray(v) => query.bind(v),
        PgValue::UuidArray(v) => query.bind(
            v.iter()
                .map(|s| uuid::Uuid::parse_str(s).map_err(|e| format!("`{s}` is not a UUID: {e}")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        PgValue::Int8Array(v) => query.bind(v),
        other => {
            return Err(format!(
                "parameter type {} is not supported by this provider",
                variant_name(&other)
            ))
        }
    })
}

fn variant_name(value: &PgValue) -> String {
    let debug = format!("{value:?}");
    debug
        .split(['(', ' '])
        .next()
        .unwrap_or("unknown")
        .to_string()
}

fn decode<'r, T: Decode<'r, Postgres>>(raw: PgValueRef<'r>, column: &str) -> Result<T, String> {
    T::decode(raw).map_err(|e| format!("column `{column}` could not be decoded: {e}"))
}

/// One row as `(column, value)` entries, typed by each column's Postgres type.
pub fn decode_row(row: &PgRow) -> Result<Vec<ResultRowEntry>, String> {
    let mut entries = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let raw = row.try_get_raw(index).map_err(|e| e.to_string())?;
        let value = if raw.is_null() {
            PgValue::Null
        } else {
            let type_name = raw.type_info().name().to_string();
            match type_name.as_str() {
                "INT8" => PgValue::BigInt(decode(raw, name)?),
                "INT4" => PgValue::Integer(decode(raw, name)?),
                "INT2" => PgValue::SmallInt(decode(raw, name)?),
                "BOOL" => PgValue::Bool(decode(raw, name)?),
                "FLOAT8" => PgValue::Double(to_parts(decode(raw, name)?)),
                "FLOAT4" => PgValue::Real(to_parts(f64::from(decode::<f32>(raw, name)?))),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => PgValue::Text(decode(raw, name)?),
                "UUID" => PgValue::Uuid(decode::<uuid::Uuid>(raw, name)?.to_string()),
                "DATE" => PgValue::Date(date_to(decode(raw, name)?)),
                "TIMESTAMP" => PgValue::Timestamp(timestamp_to(decode(raw, name)?)),
                "TIMESTAMPTZ" => PgValue::TimestampTz(TimestampTz {
                    timestamp: timestamp_to(decode::<DateTime<Utc>>(raw, name)?.naive_utc()),
                    offset: Offset::EasternHemisphereSecs(0),
                }),
                "JSON" => PgValue::Json(decode::<serde_json::Value>(raw, name)?.to_string()),
                "JSONB" => PgValue::Jsonb(decode::<serde_json::Value>(raw, name)?.to_string()),
                "BYTEA" => PgValue::Bytea(decode::<Vec<u8>>(raw, name)?.into()),
                "TEXT[]" | "VARCHAR[]" => PgValue::TextArray(decode(raw, name)?),
                "INT8[]" => PgValue::Int8Array(decode(raw, name)?),
                "UUID[]" => PgValue::UuidArray(
                    decode::<Vec<uuid::Uuid>>(raw, name)?.iter().map(ToString::to_string).collect(),
                ),
                other => {
                    return Err(format!(
                        "column `{name}` has type {other}, which this provider does not return; cast it in SQL (e.g. `{name}::text`)"
                    ))
                }
            }
        };
        entries.push(ResultRowEntry {
            column_name: name.to_string(),
            value,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_dates_are_refused() {
        assert!(date_from(&Date::Ymd((2026, 2, 30))).is_err());
        assert_eq!(
            date_from(&Date::Ymd((2026, 2, 28))).unwrap().to_string(),
            "2026-02-28"
        );
    }
}
