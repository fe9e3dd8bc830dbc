//! Routes of the probe. Every provider failure becomes problem+json: 503 when the provider says
//! its server is unavailable, 400 for a statement Postgres rejected.
use std::io::Read;

use http::{Response, StatusCode};
use kit::{response, Problem};
use serde::Deserialize;
use serde_json::json;
use wasmcloud_component::http::{self, ErrorCode, IncomingRequest, OutgoingBody, Server};
use wasmcloud_component::wasi::keyvalue::{atomics, store};
use wasmcloud_component::wasmcloud::messaging::{consumer, types::BrokerMessage};

pub mod bindings {
    wit_bindgen::generate!({
        world: "provider-probe",
        path: "../../wit",
        with: {
            "wasi:keyvalue/store@0.2.0-draft": wasmcloud_component::wasi::keyvalue::store,
            "wasi:keyvalue/atomics@0.2.0-draft": wasmcloud_component::wasi::keyvalue::atomics,
            "wasmcloud:messaging/consumer@0.2.0": wasmcloud_component::wasmcloud::messaging::consumer,
            "wasmcloud:messaging/types@0.2.0": wasmcloud_component::wasmcloud::messaging::types,
        },
        generate_all,
    });
}

const BUCKET: &str = "probe";

pub struct Probe;

http::export!(Probe);
bindings::export!(Probe with_types_in bindings);

type Answer = Result<Response<Vec<u8>>, Problem>;

fn unavailable(what: &str, e: impl std::fmt::Debug) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("{what}: {e:?}"))
}

fn bad_request(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, detail)
}

fn bucket() -> Result<store::Bucket, Problem> {
    store::open(BUCKET).map_err(|e| unavailable("key-value store", e))
}

impl Server for Probe {
    fn handle(request: IncomingRequest) -> Result<Response<impl OutgoingBody>, ErrorCode> {
        let (parts, mut body) = request.into_parts();
        let mut bytes = Vec::new();
        if let Err(e) = body.read_to_end(&mut bytes) {
            return Ok(response::problem(&bad_request(format!(
                "unreadable body: {e}"
            ))));
        }
        let segments: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
        let answer = match (parts.method.as_str(), segments.as_slice()) {
            ("PUT", ["kv", key]) => kv_set(key, bytes),
            ("GET", ["kv", key]) => kv_get(key),
            ("POST", ["kv", key, "incr"]) => kv_increment(key, parts.uri.query()),
            ("POST", ["kv", key, "cas"]) => parse(&bytes).and_then(|cas| kv_cas(key, cas)),
            // The gateway's rate-limit pattern: read, then compare-and-swap, in one invocation.
            ("POST", ["kv", key, "get-then-cas"]) => kv_get_then_cas(key),
            ("POST", ["sql", "query"]) => parse(&bytes).and_then(crate::sql::query),
            ("POST", ["sql", "transaction"]) => parse(&bytes).and_then(crate::sql::transaction),
            ("POST", ["publish"]) => parse(&bytes).and_then(publish),
            ("GET", ["delivered", id]) => deliveries(id),
            _ => Err(Problem::not_found(format!(
                "no probe route {} {}",
                parts.method,
                parts.uri.path()
            ))),
        };
        Ok(answer.unwrap_or_else(|p| response::problem(&p)))
    }
}

pub fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| bad_request(format!("invalid JSON: {e}")))
}

fn kv_set(key: &str, value: Vec<u8>) -> Answer {
    bucket()?
        .set(key, &value)
        .map_err(|e| unavailable("set", e))?;
    Ok(response::no_content())
}

fn kv_get(key: &str) -> Answer {
    match bucket()?.get(key).map_err(|e| unavailable("get", e))? {
        Some(value) => Ok(response::json(
            StatusCode::OK,
            &json!({ "value": String::from_utf8_lossy(&value) }),
        )),
        None => Err(Problem::not_found(format!("no key {key}"))),
    }
}

fn kv_increment(key: &str, query: Option<&str>) -> Answer {
    let by = query
        .and_then(|q| q.strip_prefix("by="))
        .map_or(Ok(1), |v| {
            v.parse::<u64>()
                .map_err(|_| bad_request("by must be a whole number"))
        })?;
    let value = atomics::increment(&bucket()?, key, by).map_err(|e| unavailable("increment", e))?;
    Ok(response::json(StatusCode::OK, &json!({ "value": value })))
}

#[derive(Deserialize)]
struct Cas {
    expected: Option<String>,
    new: String,
}

fn kv_cas(key: &str, cas: Cas) -> Answer {
    let swapped = bindings::pm::platform::kv_cas::compare_and_swap(
        BUCKET,
        key,
        cas.expected.as_deref().map(str::as_bytes),
        cas.new.as_bytes(),
    )
    .map_err(|e| unavailable("compare-and-swap", e))?;
    Ok(response::json(
        StatusCode::OK,
        &json!({ "swapped": swapped }),
    ))
}

fn kv_get_then_cas(key: &str) -> Answer {
    let current = bucket()?.get(key).map_err(|e| unavailable("get", e))?;
    let next = current.as_deref().map_or(1, |v| {
        String::from_utf8_lossy(v).parse::<u64>().unwrap_or(0) + 1
    });
    let swapped = bindings::pm::platform::kv_cas::compare_and_swap(
        BUCKET,
        key,
        current.as_deref(),
        next.to_string().as_bytes(),
    )
    .map_err(|e| unavailable("compare-and-swap", e))?;
    Ok(response::json(
        StatusCode::OK,
        &json!({ "swapped": swapped }),
    ))
}

#[derive(Deserialize)]
struct Publish {
    subject: String,
    body: serde_json::Value,
}

fn publish(p: Publish) -> Answer {
    let message = BrokerMessage {
        subject: p.subject,
        body: p.body.to_string().into_bytes(),
        reply_to: None,
    };
    consumer::publish(&message).map_err(|e| unavailable("publish", e))?;
    Ok(response::json(
        StatusCode::ACCEPTED,
        &json!({ "published": true }),
    ))
}

fn count(key: &str) -> Result<u64, Problem> {
    let value = bucket()?.get(key).map_err(|e| unavailable("get", e))?;
    Ok(value
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

fn deliveries(id: &str) -> Answer {
    Ok(response::json(
        StatusCode::OK,
        &json!({ "attempts": count(&format!("attempts:{id}"))?, "delivered": count(&format!("delivered:{id}"))? }),
    ))
}

/// A delivered message `{"id": .., "failOnce": bool}`: every attempt is counted; with
/// `failOnce` the first attempt is refused, so the provider must deliver it again.
impl bindings::exports::wasmcloud::messaging::handler::Guest for Probe {
    fn handle_message(msg: BrokerMessage) -> Result<(), String> {
        let body: serde_json::Value =
            serde_json::from_slice(&msg.body).map_err(|e| e.to_string())?;
        let id = body["id"].as_str().ok_or("message has no id")?.to_string();
        let bucket = store::open(BUCKET).map_err(|e| format!("{e:?}"))?;
        let attempts = atomics::increment(&bucket, &format!("attempts:{id}"), 1)
            .map_err(|e| format!("{e:?}"))?;
        if body["failOnce"].as_bool() == Some(true) && attempts == 1 {
            return Err(format!("refusing the first delivery of {id} on purpose"));
        }
        atomics::increment(&bucket, &format!("delivered:{id}"), 1).map_err(|e| format!("{e:?}"))?;
        Ok(())
    }
}
