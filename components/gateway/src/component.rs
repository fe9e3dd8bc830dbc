//! WIT glue: wasi:http in, `router::handle`, and the `Platform` the router needs, made of the
//! gateway's imports. Nothing here decides an answer.
use std::io::Read;

use http::{HeaderValue, Request, Response, StatusCode};
use kit::tokens::Claims;
use kit::{response, Problem};
use wasmcloud_component::http::{self, ErrorCode, IncomingRequest, OutgoingBody, Server};
use wasmcloud_component::wasi::config::store as config;
use wasmcloud_component::wasmcloud::bus::lattice;

use crate::ratelimit::{Buckets, Decision, Limit, Session};
use crate::{access_log, request_id, router};
use bindings::pm::platform::token_bucket;
use wasmcloud_component::wasi::clocks::monotonic_clock;
use wasmcloud_component::wasi::logging::logging::{log, Level};

mod bindings {
    wit_bindgen::generate!({
        world: "gateway",
        path: "../../wit/gateway",
        with: {
            "wasi:config/store@0.2.0-draft": wasmcloud_component::wasi::config::store,
            "wasmcloud:bus/lattice@2.0.0": wasmcloud_component::wasmcloud::bus::lattice,
            "pm:platform/types@0.1.0": platform_wit::types,
        },
        generate_all,
    });
}

/// Requests with a larger body are refused with 413 (SPEC.md: body over 1 MiB).
const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Bucket namespace of the rate limiter in the key-value store (keys get the link's prefix).
const BUCKET: &str = "gateway";

struct Gateway;

http::export!(Gateway);

impl Server for Gateway {
    fn handle(request: IncomingRequest) -> Result<Response<impl OutgoingBody>, ErrorCode> {
        let started = monotonic_clock::now();
        let id = request_id::ensure(request.headers(), platform_wit::new_id);
        let (parts, body) = request.into_parts();
        let (method, route) = (parts.method.clone(), access_log::route_of(parts.uri.path()));
        let mut response = match read_limited(body) {
            Ok(bytes) => router::handle(
                &WasmPlatform {
                    request_id: id.clone(),
                    buckets: RedisBuckets,
                },
                &Request::from_parts(parts, bytes),
            ),
            Err(problem) => response::problem(&problem),
        };
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(request_id::HEADER, value);
        }
        let record = access_log::Record {
            request_id: &id,
            method: method.as_str(),
            route,
            status: response.status().as_u16(),
            duration_ms: (monotonic_clock::now() - started) as f64 / 1e6,
        };
        log(Level::Info, access_log::CONTEXT, &record.to_json());
        Ok(response)
    }
}

/// Reads at most `MAX_BODY_BYTES`; one byte more means the body is too large.
fn read_limited(body: impl Read) -> Result<Vec<u8>, Problem> {
    let mut bytes = Vec::new();
    body.take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("request body could not be read: {e}"),
            )
        })?;
    if bytes.len() as u64 > MAX_BODY_BYTES {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds {MAX_BODY_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

struct WasmPlatform {
    request_id: String,
    buckets: RedisBuckets,
}

/// The rate limiter's buckets: Redis through the `token-bucket` link to the key-value provider.
struct RedisBuckets;

impl Buckets for RedisBuckets {
    fn take(&self, client: &str, limit: Limit) -> Result<Decision, String> {
        linked()?;
        let limit = token_bucket::Limit {
            per_second: limit.per_second,
            burst: limit.burst,
        };
        match token_bucket::take(BUCKET, client, limit)? {
            token_bucket::Decision::Allow => Ok(Decision::Allow),
            token_bucket::Decision::Deny(wait_ms) => Ok(Decision::from_wait_ms(Some(wait_ms))),
        }
    }

    fn admit(&self, client: &str, limit: Limit, session: &Session) -> Result<Decision, String> {
        linked()?;
        let limit = token_bucket::Limit {
            per_second: limit.per_second,
            burst: limit.burst,
        };
        let session = token_bucket::Session {
            id: session.id.clone(),
            subject: session.subject.clone(),
            issued_at: session.issued_at,
        };
        match token_bucket::admit(
            BUCKET,
            client,
            limit,
            kit::tokens::SESSIONS_BUCKET,
            &session,
        )? {
            token_bucket::Admission::Allow => Ok(Decision::Allow),
            token_bucket::Admission::Deny(wait_ms) => Ok(Decision::from_wait_ms(Some(wait_ms))),
            token_bucket::Admission::Ended => Ok(Decision::Ended),
        }
    }
}

/// A call over a link that does not exist (yet: wadm is still linking) traps the whole
/// request; asking first turns that into an error the limiter can fail open on.
fn linked() -> Result<(), String> {
    let interface = lattice::CallTargetInterface::new("pm", "platform", "token-bucket");
    lattice::set_link_name("default", vec![interface])
        .map_err(|e| format!("rate-limit store not linked: {e}"))
}

impl router::Platform for WasmPlatform {
    fn config(&self, key: &str) -> Option<String> {
        config::get(key).ok().flatten()
    }

    fn secret(&self, key: &str) -> Option<String> {
        platform_wit::secrets::text(key)
    }

    fn buckets(&self) -> &dyn Buckets {
        &self.buckets
    }

    fn new_id(&self) -> String {
        platform_wit::new_id()
    }

    fn request_id(&self) -> &str {
        &self.request_id
    }

    fn audit(&self, entry: &kit::audit::Entry) -> Result<(), String> {
        let interface = lattice::CallTargetInterface::new("pm", "platform", "audit");
        lattice::set_link_name("audit", vec![interface])
            .map_err(|e| format!("no `audit` link: {e}"))?;
        match bindings::pm::platform::audit::append(&platform_wit::audit_entry(entry)) {
            Ok(written) => written,
            Err(e) => {
                log(
                    Level::Warn,
                    "gateway",
                    &format!(
                        "request {}: the call to `audit` failed: {}",
                        self.request_id,
                        e.to_debug_string()
                    ),
                );
                Err("the audit service did not answer in time".to_string())
            }
        }
    }

    fn forward(
        &self,
        link: &str,
        request: &Request<Vec<u8>>,
        path: &str,
        principal: Option<&Claims>,
    ) -> Result<Response<Vec<u8>>, String> {
        // One `service` interface, many targets: the link name picks the component.
        let service = lattice::CallTargetInterface::new("pm", "platform", "service");
        lattice::set_link_name(link, vec![service])
            .map_err(|e| format!("no `{link}` link: {e}"))?;
        let principal = principal.map(|c| platform_wit::Principal {
            subject: c.sub.clone(),
            role: c.role.clone(),
        });
        let record = platform_wit::to_record(request, path, principal.as_ref(), &self.request_id);
        // A call that failed on the way or got no answer within the host's call timeout comes
        // back as an error (not a trap), so the gateway answers for it like any other.
        bindings::pm::platform::service::handle(&record)
            .map(platform_wit::response_from_record)
            .map_err(|e| {
                log(
                    Level::Warn,
                    "gateway",
                    &format!(
                        "request {}: the call to `{link}` failed: {}",
                        self.request_id,
                        e.to_debug_string()
                    ),
                );
                "no answer in time".to_string()
            })
    }
}
