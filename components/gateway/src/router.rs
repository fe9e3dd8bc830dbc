//! Which answer a request gets. The gateway's own routes (`/health`) are answered here; every
//! other known path is authenticated, rate limited and forwarded to its component through
//! `Platform`, which the wasm glue implements with WIT imports and tests with fakes.
// A refusal is an answer, returned by value once per request: boxing it would buy nothing.
#![allow(clippy::result_large_err)]
use crate::docs::{self, Health};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use kit::tokens::{Claims, TokenError, Tokens};
use kit::{readiness, response, Problem};

use crate::audit;
use crate::client_address;
use crate::ratelimit::{Buckets, Decision, Limit, Session};
use crate::routes::{self, Access};
use kit::audit::{Context, Entry, Principal};

/// Version reported by `/health`, taken from the crate so it always matches the build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A second build of the same version, told apart by `/health` (`cargo xtask test` swaps it in
/// while the platform serves, and watches the answers change).
pub const BUILD: Option<&str> = if cfg!(feature = "hot-swap-check") {
    Some("hot-swap-check")
} else {
    None
};

/// What the gateway needs from its surroundings.
pub trait Platform {
    /// A configuration value (wasi:config), e.g. `jwt_issuer`.
    fn config(&self, key: &str) -> Option<String>;
    /// A secret the host fetched for the gateway (wasmcloud:secrets), e.g. `jwt_secret`.
    fn secret(&self, key: &str) -> Option<String>;
    fn buckets(&self) -> &dyn Buckets;
    /// A fresh random id (the audit record's).
    fn new_id(&self) -> String;
    /// This request's id (`x-request-id`).
    fn request_id(&self) -> &str;
    /// Appends a record to the audit trail (kept once per id); `Err` when it cannot be written.
    fn audit(&self, entry: &Entry) -> Result<(), String>;
    /// Sends the request to the component linked as `link`, with the path it should see.
    fn forward(
        &self,
        link: &str,
        request: &Request<Vec<u8>>,
        path: &str,
        principal: Option<&Claims>,
    ) -> Result<Response<Vec<u8>>, String>;
}

pub fn handle(platform: &dyn Platform, request: &Request<Vec<u8>>) -> Response<Vec<u8>> {
    let path = request.uri().path();
    let method = request.method();
    if path == "/health" {
        return only(
            method,
            &[Method::GET, Method::HEAD],
            "GET, HEAD",
            path,
            || {
                response::json(
                    StatusCode::OK,
                    &Health {
                        status: "UP",
                        service: "gateway",
                        version: VERSION,
                        build: BUILD,
                    },
                )
            },
        );
    }
    if path == "/ready" {
        return only(method, &[Method::GET], "GET", path, || ready(platform));
    }
    if path == "/api-docs" || path.starts_with("/api-docs/") {
        return only(method, &[Method::GET], "GET", path, || {
            api_docs(platform, path.trim_start_matches("/api-docs"))
        });
    }
    let Some((route, forwarded_path)) = routes::resolve(path) else {
        return response::problem(&Problem::not_found(format!("no route for {method} {path}")));
    };
    serve(platform, request, route, &forwarded_path)
}

/// A request for a component: admitted (token, rate limit, role), forwarded with its audit
/// context, and its answer recorded in the audit trail before it leaves (audit.rs).
fn serve(
    platform: &dyn Platform,
    request: &Request<Vec<u8>>,
    route: &routes::Route,
    path: &str,
) -> Response<Vec<u8>> {
    let client = client_address(platform, request);
    let kind = audit::classify(route.link, request.method(), path);
    let (principal, admission, ended) = admit(platform, request, route, &client);
    let context = kind.as_ref().map(|kind| Context {
        id: platform.new_id(),
        action: kind.action(),
        resource_type: kind.resource_type.to_string(),
        client_address: client.clone(),
        actor: principal.as_ref().map(|c| Principal {
            subject: c.sub.clone(),
            role: c.role.clone(),
        }),
        request_id: platform.request_id().to_string(),
    });
    let answer = admission.and_then(|()| {
        let mut forwarded = audit::forwarded(request, context.as_ref());
        if ended || route.access == Access::Page {
            // A public route serves an ended session's caller as one without a token: auth
            // must not validate, sign out or act on it (it checks signatures, not sessions).
            // The console's files are the same for everyone and never see a token.
            forwarded.headers_mut().remove(header::AUTHORIZATION);
        }
        platform
            .forward(route.link, &forwarded, path, principal.as_ref())
            .map_err(|e| {
                response::problem(&Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the {} service did not answer: {e}", route.link),
                ))
            })
    });
    let answer = answer.unwrap_or_else(|refusal| refusal);
    match (context, kind) {
        (Some(context), Some(kind)) => {
            audit::settle(&context, &kind, answer, |entry| platform.audit(entry))
        }
        _ => audit::without_audit_headers(answer),
    }
}

/// What the gateway decided before forwarding: the caller's verified token (a refused caller
/// with a valid token is still named in the audit record), whether the request may go on, and
/// whether its token's session was ended.
type Admission = (Option<Claims>, Result<(), Response<Vec<u8>>>, bool);

/// Whether the request may reach its component. Rate limited first (by verified subject, else
/// client address), so bad tokens are limited too; a verified token's session is checked in
/// the same call.
fn admit(
    platform: &dyn Platform,
    request: &Request<Vec<u8>>,
    route: &routes::Route,
    client: &str,
) -> Admission {
    if route.access == Access::Page {
        return (None, Ok(()), false);
    }
    let tokens = match tokens(platform) {
        Ok(tokens) => tokens,
        Err(refusal) => return (None, Err(refusal), false),
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let verified = tokens.verify_header(authorization);
    let limit = Limit::from_config(|key| platform.config(key));
    let decision = match &verified {
        Ok(claims) => {
            let session = Session {
                id: claims.jti.clone().unwrap_or_default(),
                subject: claims.sub.clone(),
                issued_at: claims.iat,
            };
            let bucket = format!("sub:{}", claims.sub);
            (
                bucket.clone(),
                platform.buckets().admit(&bucket, limit, &session),
            )
        }
        Err(_) => {
            let bucket = format!("addr:{client}");
            (bucket.clone(), platform.buckets().take(&bucket, limit))
        }
    };
    let ended = matches!(decision.1, Ok(Decision::Ended));
    let admission =
        rate_limit(&decision.0, decision.1).and_then(|()| match (route.access, &verified) {
            // A public route serves anyone; an ended session's token just names no one there.
            (Access::Public, _) => Ok(()),
            (_, Err(e)) => Err(unauthorized(e)),
            (_, Ok(_)) if ended => Err(unauthorized(&TokenError::Invalid(
                "its session was ended (signed out, or the account was disabled or given a new \
             password); sign in again"
                    .into(),
            ))),
            (Access::Role(role), Ok(claims)) if claims.role != role => {
                Err(response::problem(&Problem::new(
                    StatusCode::FORBIDDEN,
                    format!("this route needs the {role} role"),
                )))
            }
            (_, Ok(_)) => Ok(()),
        });
    let principal = verified
        .ok()
        .filter(|_| !(ended && route.access == Access::Public));
    (principal, admission, ended)
}

/// `GET /ready`: the gateway's own store (the rate-limit buckets) and every service's `/ready`
/// document, which reports that service's dependencies; 200 only when all of them are up.
fn ready(platform: &dyn Platform) -> Response<Vec<u8>> {
    let mut checks = std::collections::BTreeMap::new();
    let generous = Limit {
        per_second: 1000.0,
        burst: 1000,
    };
    let store = platform
        .buckets()
        .take("readiness-probe", generous)
        .map(|_| ());
    checks.insert("rate-limit store".to_string(), readiness::check(store));
    let probe = docs::internal_get("/ready");
    for service in routes::links() {
        let document = match platform.forward(service, &probe, "/ready", None) {
            Ok(answer) => serde_json::from_slice(answer.body()).unwrap_or_else(|_| {
                readiness::check(Err(format!(
                    "answered {} without a readiness document",
                    answer.status()
                )))
            }),
            Err(e) => readiness::check(Err(e)),
        };
        checks.insert(service.to_string(), document);
    }
    readiness::report(checks)
}

/// `/api-docs` (everything) or `/api-docs/{service}` (one service's own document).
fn api_docs(platform: &dyn Platform, rest: &str) -> Response<Vec<u8>> {
    let request = docs::internal_get("/openapi.json");
    match rest.trim_matches('/') {
        "" => {
            let documents: Vec<Vec<u8>> = docs::services()
                .into_iter()
                .filter_map(|service| {
                    platform
                        .forward(service, &request, "/openapi.json", None)
                        .ok()
                })
                .filter(|response| response.status() == StatusCode::OK)
                .map(Response::into_body)
                .collect();
            docs::merged(&documents)
        }
        service if docs::services().contains(&service) => platform
            .forward(service, &request, "/openapi.json", None)
            .unwrap_or_else(|e| {
                response::problem(&Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the {service} service did not answer: {e}"),
                ))
            }),
        other => docs::unknown_service(other),
    }
}

fn tokens(platform: &dyn Platform) -> Result<Tokens, Response<Vec<u8>>> {
    let misconfigured = |why: String| {
        response::problem(&Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("gateway misconfigured: {why}"),
        ))
    };
    let issuer = platform
        .config("jwt_issuer")
        .unwrap_or_else(|| "patient-management".into());
    Tokens::from_secrets(|name| platform.secret(name), &issuer).map_err(misconfigured)
}

fn unauthorized(error: &TokenError) -> Response<Vec<u8>> {
    let mut answer = response::problem(&Problem::new(StatusCode::UNAUTHORIZED, error.to_string()));
    answer
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    answer
}

/// The client's address, believing `X-Forwarded-For` only from the proxies the config trusts
/// (`trusted_proxies`, default loopback). A value that does not parse trusts no proxy: the safe
/// reading, as no client can then choose its address.
fn client_address(platform: &dyn Platform, request: &Request<Vec<u8>>) -> String {
    let configured = platform.config(client_address::TRUSTED_PROXIES_KEY);
    let trusted = client_address::TrustedProxies::parse(
        configured
            .as_deref()
            .unwrap_or(client_address::DEFAULT_TRUSTED_PROXIES),
    )
    .unwrap_or_else(|_| client_address::TrustedProxies::none());
    client_address::client_address(request.headers(), &trusted)
}

/// What the rate limiter decided for `client`: on to the next check, or a 429.
fn rate_limit(client: &str, decision: Result<Decision, String>) -> Result<(), Response<Vec<u8>>> {
    match decision {
        // An ended session is refused by the access check, which knows the route.
        Ok(Decision::Allow | Decision::Ended) => Ok(()),
        Ok(Decision::Deny { retry_after_secs }) => {
            let mut answer = response::problem(&Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("rate limit exceeded; retry after {retry_after_secs} s"),
            ));
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Err(answer)
        }
        // The limiter protects the services; when its store is away, serving beats refusing
        // everyone (as Spring's RedisRateLimiter in the seed does).
        Err(e) => {
            eprintln!("rate limiter unavailable, allowing {client}: {e}");
            Ok(())
        }
    }
}

/// Runs `handler` when `method` is one of `allowed` (`allow` spells them for the `Allow`
/// header), else answers 405.
fn only(
    method: &Method,
    allowed: &[Method],
    allow: &'static str,
    path: &str,
    handler: impl FnOnce() -> Response<Vec<u8>>,
) -> Response<Vec<u8>> {
    if allowed.contains(method) {
        return handler();
    }
    response::problem(&Problem::method_not_allowed(method.as_str(), path, allow))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::memory::Memory;
    use std::cell::RefCell;
    use std::collections::HashMap;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[derive(Default)]
    struct Fake {
        buckets: Memory,
        forwarded: RefCell<Vec<(String, String, Option<String>)>>,
        config: HashMap<&'static str, String>,
        secrets: HashMap<&'static str, String>,
        /// Links whose component does not answer.
        down: Vec<&'static str>,
        audited: RefCell<Vec<Entry>>,
        /// The audit trail cannot be written.
        trail_down: bool,
    }

    impl Fake {
        fn new() -> Self {
            let mut fake = Fake::default();
            fake.secrets.insert("jwt_secret", SECRET.into());
            fake.config.insert("rate_limit_burst", "100".into());
            fake
        }
    }

    impl Platform for Fake {
        fn config(&self, key: &str) -> Option<String> {
            self.config.get(key).cloned()
        }
        fn secret(&self, key: &str) -> Option<String> {
            self.secrets.get(key).cloned()
        }
        fn buckets(&self) -> &dyn Buckets {
            &self.buckets
        }
        fn new_id(&self) -> String {
            format!("audit-{}", self.audited.borrow().len())
        }
        fn request_id(&self) -> &str {
            "req-1"
        }
        fn audit(&self, entry: &Entry) -> Result<(), String> {
            if self.trail_down {
                return Err("postgres down".into());
            }
            self.audited.borrow_mut().push(entry.clone());
            Ok(())
        }
        fn forward(
            &self,
            link: &str,
            _: &Request<Vec<u8>>,
            path: &str,
            p: Option<&Claims>,
        ) -> Result<Response<Vec<u8>>, String> {
            self.forwarded
                .borrow_mut()
                .push((link.into(), path.into(), p.map(|c| c.sub.clone())));
            if self.down.contains(&link) {
                return Err("no instance answered".into());
            }
            if path == "/ready" {
                return Ok(readiness::report(
                    [("postgres".to_string(), readiness::check(Ok(())))].into(),
                ));
            }
            Ok(response::json(StatusCode::OK, &"forwarded"))
        }
    }

    fn token(role: &str) -> String {
        let tokens = Tokens::new(SECRET.as_bytes(), "patient-management").unwrap();
        tokens
            .issue("nurse@clinic.test", role, kit::tokens::now(), 600)
            .unwrap()
            .0
    }

    fn call(
        platform: &Fake,
        method: Method,
        path: &str,
        bearer: Option<&str>,
    ) -> Response<Vec<u8>> {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(t) = bearer {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        handle(platform, &builder.body(Vec::new()).unwrap())
    }

    #[test]
    fn health_and_unknown_routes() {
        let fake = Fake::new();
        assert_eq!(
            call(&fake, Method::GET, "/health", None).status(),
            StatusCode::OK
        );
        assert_eq!(
            call(&fake, Method::POST, "/health", None).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let missing = call(&fake, Method::GET, "/nope", None);
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            missing.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[test]
    fn protected_routes_need_a_valid_token_and_the_right_role() {
        let fake = Fake::new();
        let no_token = call(&fake, Method::GET, "/api/patients", None);
        assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(no_token.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(
            call(&fake, Method::GET, "/api/patients", Some("garbage")).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(
                &fake,
                Method::GET,
                "/api/analytics/summary",
                Some(&token("CLINICIAN"))
            )
            .status(),
            StatusCode::FORBIDDEN
        );
        assert!(
            fake.forwarded.borrow().is_empty(),
            "nothing reached a component"
        );

        assert_eq!(
            call(
                &fake,
                Method::GET,
                "/api/patients/1",
                Some(&token("CLINICIAN"))
            )
            .status(),
            StatusCode::OK
        );
        assert_eq!(
            call(
                &fake,
                Method::GET,
                "/api/analytics/summary",
                Some(&token("ADMIN"))
            )
            .status(),
            StatusCode::OK
        );
        let forwarded = fake.forwarded.borrow();
        assert_eq!(
            forwarded[0],
            (
                "patients".into(),
                "/patients/1".into(),
                Some("nurse@clinic.test".into())
            )
        );
        assert_eq!(forwarded[1].0, "analytics");
    }

    #[test]
    fn public_routes_pass_a_valid_principal_along() {
        let fake = Fake::new();
        assert_eq!(
            call(&fake, Method::POST, "/auth/login", None).status(),
            StatusCode::OK
        );
        assert_eq!(
            call(&fake, Method::POST, "/auth/users", Some(&token("ADMIN"))).status(),
            StatusCode::OK
        );
        let forwarded = fake.forwarded.borrow();
        assert_eq!(forwarded[0], ("auth".into(), "/login".into(), None));
        assert_eq!(forwarded[1].2.as_deref(), Some("nurse@clinic.test"));
    }

    #[test]
    fn every_audited_request_leaves_one_record_refusals_too() {
        let fake = Fake::new();
        let clinician = token("CLINICIAN");
        call(&fake, Method::GET, "/api/patients/1", Some(&clinician));
        call(
            &fake,
            Method::GET,
            "/api/analytics/summary",
            Some(&clinician),
        );
        call(&fake, Method::GET, "/api/patients", None);
        call(&fake, Method::GET, "/auth/validate", Some(&clinician));
        let audited = fake.audited.borrow();
        let seen: Vec<(&str, u16, Option<&str>)> = audited
            .iter()
            .map(|e| (e.action.as_str(), e.outcome, e.actor.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("patient.read", 200, Some("nurse@clinic.test")),
                ("analytics.read", 403, Some("nurse@clinic.test")),
                ("patient.list", 401, None),
            ],
            "a token check is not audited"
        );
        assert_eq!(audited[0].request_id, "req-1");
    }

    #[test]
    fn an_answer_the_trail_cannot_record_is_withheld() {
        let mut fake = Fake::new();
        fake.trail_down = true;
        let answer = call(&fake, Method::GET, "/api/patients/1", Some(&token("ADMIN")));
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!String::from_utf8_lossy(answer.body()).contains("forwarded"));
        assert_eq!(
            call(&fake, Method::GET, "/health", None).status(),
            StatusCode::OK,
            "the gateway's own routes are not audited"
        );
    }

    #[test]
    fn an_ended_session_is_refused_everywhere_a_token_is_needed() {
        let fake = Fake::new();
        let tokens = Tokens::new(SECRET.as_bytes(), "patient-management").unwrap();
        let session = |jti| {
            tokens
                .issue_session("nurse@clinic.test", "ADMIN", jti, kit::tokens::now(), 600)
                .unwrap()
                .0
        };
        fake.buckets.end("signed-out");
        let ended = session("signed-out");
        let refused = call(&fake, Method::GET, "/api/patients/1", Some(&ended));
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(String::from_utf8_lossy(refused.body()).contains("session was ended"));
        assert_eq!(
            call(
                &fake,
                Method::GET,
                "/api/patients/1",
                Some(&session("live"))
            )
            .status(),
            StatusCode::OK
        );
        // A public route still serves, as to a caller without a token.
        call(&fake, Method::POST, "/auth/users", Some(&ended));
        let forwarded = fake.forwarded.borrow();
        assert_eq!(
            forwarded.last().unwrap(),
            &("auth".into(), "/users".into(), None)
        );
        let audited = fake.audited.borrow();
        assert_eq!(
            (audited[0].outcome, audited[0].actor.as_deref()),
            (401, Some("nurse@clinic.test")),
            "the refusal names whose session it was"
        );
    }

    #[test]
    fn console_pages_need_no_token_spend_no_bucket_and_leave_no_record() {
        let mut fake = Fake::new();
        fake.config.insert("rate_limit_burst", "1".into());
        for _ in 0..3 {
            assert_eq!(
                call(&fake, Method::GET, "/", Some(&token("ADMIN"))).status(),
                StatusCode::OK
            );
        }
        assert_eq!(
            call(&fake, Method::GET, "/assets/app.0123.js", None).status(),
            StatusCode::OK
        );
        let forwarded = fake.forwarded.borrow();
        assert_eq!(
            forwarded[0],
            ("console".into(), "/".into(), None),
            "no principal is passed on"
        );
        assert_eq!(forwarded[3].1, "/assets/app.0123.js");
        assert!(fake.audited.borrow().is_empty());
        drop(forwarded);
        assert_eq!(
            call(&fake, Method::GET, "/api/patients", Some(&token("ADMIN"))).status(),
            StatusCode::OK,
            "the API's bucket is untouched by the pages"
        );
    }

    #[test]
    fn over_the_limit_is_429_with_retry_after() {
        let mut fake = Fake::new();
        fake.config.insert("rate_limit_burst", "2".into());
        let t = token("ADMIN");
        assert_eq!(
            call(&fake, Method::GET, "/api/patients", Some(&t)).status(),
            StatusCode::OK
        );
        assert_eq!(
            call(&fake, Method::GET, "/api/patients", Some(&t)).status(),
            StatusCode::OK
        );
        let limited = call(&fake, Method::GET, "/api/patients", Some(&t));
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn api_docs_are_public_and_unknown_services_are_404() {
        let fake = Fake::new();
        assert_eq!(
            call(&fake, Method::GET, "/api-docs", None).status(),
            StatusCode::OK
        );
        assert_eq!(
            call(&fake, Method::GET, "/api-docs/auth", None).status(),
            StatusCode::OK
        );
        assert_eq!(
            call(&fake, Method::GET, "/api-docs/nope", None).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            fake.forwarded.borrow().last().unwrap(),
            &("auth".into(), "/openapi.json".into(), None)
        );
    }

    #[test]
    fn a_missing_signing_key_is_503_not_a_pass() {
        let mut fake = Fake::new();
        fake.secrets.remove("jwt_secret");
        assert_eq!(
            call(&fake, Method::GET, "/api/patients", Some("x")).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn ready_reports_every_service_and_is_503_when_one_is_down() {
        let mut fake = Fake::new();
        let request = |fake: &Fake| {
            let request = Request::builder().uri("/ready").body(Vec::new()).unwrap();
            let answer = handle(fake, &request);
            let body: serde_json::Value = serde_json::from_slice(answer.body()).unwrap();
            (answer.status(), body)
        };
        let (status, body) = request(&fake);
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["checks"]["patients"]["checks"]["postgres"]["status"],
            "UP"
        );
        assert_eq!(body["checks"]["rate-limit store"]["status"], "UP");
        fake.down.push("billing");
        let (status, body) = request(&fake);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["billing"]["detail"], "no instance answered");
        assert_eq!(body["checks"]["auth"]["status"], "UP");
    }
}
