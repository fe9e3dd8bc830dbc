//! WIT glue: wasi:http in, `router::handle`, and the `Platform` the router needs, made of the
//! gateway's imports. Nothing here decides an answer.
use std::cell::OnceCell;
use std::io::Read;

use http::{HeaderValue, Request, Response, StatusCode};
use kit::tokens::Claims;
use kit::{response, Problem};
use wasmcloud_component::http::{self, ErrorCode, IncomingRequest, OutgoingBody, Server};
use wasmcloud_component::wasi::config::store as config;
use wasmcloud_component::wasi::keyvalue::store;
use wasmcloud_component::wasmcloud::bus::lattice;
use wasmcloud_component::HostRng;

use crate::ratelimit::BucketStore;
use crate::{request_id, router};

mod bindings {
    wit_bindgen::generate!({
        world: "gateway",
        path: "../../wit",
        with: {
            "wasi:keyvalue/store@0.2.0-draft": wasmcloud_component::wasi::keyvalue::store,
            "wasi:config/store@0.2.0-draft": wasmcloud_component::wasi::config::store,
            "wasmcloud:bus/lattice@2.0.0": wasmcloud_component::wasmcloud::bus::lattice,
            "pm:platform/types@0.1.0": platform_wit::types,
        },
        generate_all,
    });
}

/// Requests with a larger body are refused with 413 (SPEC.md: body over 1 MiB).
const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Key-value bucket of the rate limiter (keys get the link's prefix in Redis).
const BUCKET: &str = "gateway";

struct Gateway;

http::export!(Gateway);

impl Server for Gateway {
    fn handle(request: IncomingRequest) -> Result<Response<impl OutgoingBody>, ErrorCode> {
        let id = request_id::ensure(request.headers(), || HostRng::generate_guid().to_string());
        let (parts, body) = request.into_parts();
        let mut response = match read_limited(body) {
            Ok(bytes) => router::handle(
                &WasmPlatform {
                    request_id: id.clone(),
                    buckets: Buckets::default(),
                },
                &Request::from_parts(parts, bytes),
            ),
            Err(problem) => response::problem(&problem),
        };
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(request_id::HEADER, value);
        }
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
    buckets: Buckets,
}

/// The rate limiter's store: Redis through the key-value and kv-cas links.
#[derive(Default)]
struct Buckets {
    /// Whether both links exist, asked once per request: a call over a link that does not
    /// exist (yet: wadm is still linking) traps the whole request, while an error here lets the
    /// limiter fail open as documented.
    linked: OnceCell<Result<(), String>>,
}

impl Buckets {
    fn linked(&self) -> Result<(), String> {
        self.linked
            .get_or_init(|| {
                let interfaces = vec![
                    lattice::CallTargetInterface::new("wasi", "keyvalue", "store"),
                    lattice::CallTargetInterface::new("pm", "platform", "kv-cas"),
                ];
                lattice::set_link_name("default", interfaces)
                    .map_err(|e| format!("rate-limit store not linked: {e}"))
            })
            .clone()
    }
}

impl BucketStore for Buckets {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.linked()?;
        store::open(BUCKET)
            .and_then(|b| b.get(key))
            .map_err(|e| format!("{e:?}"))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, String> {
        self.linked()?;
        bindings::pm::platform::kv_cas::compare_and_swap(BUCKET, key, expected, new)
    }
}

impl router::Platform for WasmPlatform {
    fn config(&self, key: &str) -> Option<String> {
        config::get(key).ok().flatten()
    }

    fn buckets(&self) -> &dyn BucketStore {
        &self.buckets
    }

    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
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
        Ok(platform_wit::response_from_record(
            bindings::pm::platform::service::handle(&record),
        ))
    }
}
