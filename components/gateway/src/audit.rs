//! The gateway's part of the audit trail (kit::audit says who writes what): which requests are
//! audited and as what, the headers that tell a service, and the record of every answer no
//! service recorded itself, written before the answer leaves.
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use kit::audit::{self, Context, Entry};
use kit::fields::parse_uuid;
use kit::{response, Problem};

/// What an audited request is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    pub resource_type: &'static str,
    pub verb: String,
    /// The id the path names, if any.
    pub resource_id: Option<String>,
}

impl Kind {
    pub fn action(&self) -> String {
        format!("{}.{}", self.resource_type, self.verb)
    }

    /// The patient the path names: a patient's own id, or the patient a billing account is for.
    fn patient_id(&self) -> Option<String> {
        match self.resource_type {
            "patient" | "billing-account" => parse_uuid(self.resource_id.as_deref()?),
            _ => None,
        }
    }
}

/// What a request on `link`'s `path` (as the service sees it) is, or `None` when it is not
/// about patient data or accounts (a token check, a service's OpenAPI document).
pub fn classify(link: &str, method: &Method, path: &str) -> Option<Kind> {
    match link {
        "auth" if path == "/login" => Some(Kind {
            resource_type: "session",
            verb: "login".into(),
            resource_id: None,
        }),
        "auth" if path == "/logout" => Some(Kind {
            resource_type: "session",
            verb: "logout".into(),
            resource_id: None,
        }),
        "auth" if path == "/password" => Some(Kind {
            resource_type: "user",
            verb: "change-password".into(),
            resource_id: None,
        }),
        "auth" if under(path, "/users") => Some(item("user", "/users", method, path)),
        "auth" => None,
        "patients" => Some(item("patient", "/patients", method, path)),
        "appointments" => Some(item("appointment", "/appointments", method, path)),
        "billing" => Some(item("billing-account", "/billing/accounts", method, path)),
        "analytics" => Some(item("analytics", "/analytics", method, path)),
        "audit" if path == "/audit/verify" => Some(Kind {
            resource_type: "audit-trail",
            verb: "verify".into(),
            resource_id: None,
        }),
        "audit" => Some(item("audit-trail", "/audit", method, path)),
        _ => None,
    }
}

fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A collection at `prefix` and its items: the verb follows the method, and the segment after
/// the prefix is the item's id.
fn item(resource_type: &'static str, prefix: &str, method: &Method, path: &str) -> Kind {
    let mut segments = path
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or_default()
        .split('/');
    let resource_id = segments
        .next()
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    // An action on an item (`/users/{id}/disable`) is its own verb.
    let action = segments
        .next()
        .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
    let verb = match *method {
        Method::POST if action.is_some() => action.unwrap_or_default(),
        Method::GET | Method::HEAD if resource_id.is_some() => "read",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT | Method::PATCH => "update",
        Method::DELETE => "delete",
        _ => "other",
    };
    Kind {
        resource_type,
        verb: verb.into(),
        resource_id,
    }
}

/// The request a service gets: the client's own `x-pm-*` headers removed (only the gateway
/// speaks that protocol), the audit context's added.
pub fn forwarded(request: &Request<Vec<u8>>, context: Option<&Context>) -> Request<Vec<u8>> {
    let mut headers = without_platform_headers(request.headers(), "x-pm-");
    for (name, value) in context.iter().flat_map(|c| c.headers()) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = headers;
    copy
}

fn without_platform_headers(headers: &HeaderMap, prefix: &str) -> HeaderMap {
    headers
        .iter()
        .filter(|(name, _)| !name.as_str().starts_with(prefix))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// An answer without the audit headers a service set for the gateway.
pub fn without_audit_headers(answer: Response<Vec<u8>>) -> Response<Vec<u8>> {
    let (mut parts, body) = answer.into_parts();
    parts.headers = without_platform_headers(&parts.headers, audit::PREFIX);
    Response::from_parts(parts, body)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    Some(headers.get(name)?.to_str().ok()?.to_string())
}

/// The answer the client gets for `answer` to the audited request `context` of `kind`: the
/// service's audit headers removed, and the record written unless the service wrote it with its
/// change. A record that cannot be written turns the answer into a 503: nothing is disclosed or
/// refused without a trace (a change was recorded by its service, so none is lost here).
pub fn settle(
    context: &Context,
    kind: &Kind,
    answer: Response<Vec<u8>>,
    write: impl FnOnce(&Entry) -> Result<(), String>,
) -> Response<Vec<u8>> {
    let (mut parts, body) = answer.into_parts();
    let said = parts.headers.clone();
    parts.headers = without_platform_headers(&parts.headers, audit::PREFIX);
    if said.contains_key(audit::AUDITED) {
        return Response::from_parts(parts, body);
    }
    let resource_id = header(&said, audit::RESOURCE_ID).or_else(|| kind.resource_id.clone());
    let patient_id = header(&said, audit::PATIENT_ID)
        .and_then(|id| parse_uuid(&id))
        .or_else(|| kind.patient_id());
    let mut entry = context.entry(
        parts.status.as_u16(),
        resource_id.as_deref(),
        patient_id.as_deref(),
    );
    if entry.actor.is_none() {
        // A login names the user it signed in; a caller with a token is that token's subject.
        entry.actor = header(&said, audit::ACTOR);
        entry.actor_role = header(&said, audit::ACTOR_ROLE);
    }
    match write(&entry) {
        Ok(()) => Response::from_parts(parts, body),
        Err(e) => {
            let mut refused = response::problem(&Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the audit trail could not record this request, so it is not answered; retry: {e}"),
            ));
            refused
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::audit::Principal;

    const PATIENT: &str = "123e4567-e89b-12d3-a456-426614174000";

    #[test]
    fn requests_are_classified_by_service_path_and_method() {
        let kind = |link, method: Method, path: &str| {
            classify(link, &method, path).map(|k| (k.action(), k.resource_id))
        };
        assert_eq!(
            kind("patients", Method::GET, &format!("/patients/{PATIENT}")),
            Some(("patient.read".into(), Some(PATIENT.into())))
        );
        assert_eq!(
            kind("patients", Method::GET, "/patients"),
            Some(("patient.list".into(), None))
        );
        assert_eq!(
            kind("patients", Method::POST, "/patients"),
            Some(("patient.create".into(), None))
        );
        assert_eq!(
            kind("appointments", Method::PUT, "/appointments/a1"),
            Some(("appointment.update".into(), Some("a1".into())))
        );
        assert_eq!(
            kind(
                "billing",
                Method::GET,
                &format!("/billing/accounts/{PATIENT}")
            )
            .unwrap()
            .0,
            "billing-account.read"
        );
        assert_eq!(
            kind("auth", Method::POST, "/login").unwrap().0,
            "session.login"
        );
        assert_eq!(
            kind("auth", Method::POST, "/users").unwrap().0,
            "user.create"
        );
        assert_eq!(kind("auth", Method::GET, "/validate"), None);
        assert_eq!(
            kind("auth", Method::POST, "/users/u1/disable"),
            Some(("user.disable".into(), Some("u1".into())))
        );
        assert_eq!(
            kind("auth", Method::PUT, "/password").unwrap().0,
            "user.change-password"
        );
        assert_eq!(
            kind("auth", Method::POST, "/logout").unwrap().0,
            "session.logout"
        );
        assert_eq!(
            kind("audit", Method::GET, "/audit/verify").unwrap().0,
            "audit-trail.verify"
        );
        assert_eq!(
            kind("analytics", Method::GET, "/analytics/summary")
                .unwrap()
                .0,
            "analytics.read"
        );
    }

    fn context() -> Context {
        Context {
            id: "0b9c9d34-4a0f-4b5e-9d8e-2f8f3b1b1a11".into(),
            action: "patient.read".into(),
            resource_type: "patient".into(),
            client_address: "203.0.113.9".into(),
            actor: Some(Principal {
                subject: "nurse@clinic.test".into(),
                role: "CLINICIAN".into(),
            }),
            request_id: "req-1".into(),
        }
    }

    #[test]
    fn the_client_cannot_speak_the_audit_protocol() {
        let request = Request::get("/api/patients")
            .header("x-pm-audited", "1")
            .header("x-pm-audit-id", "forged")
            .header("x-pm-client-address", "10.0.0.1")
            .header("accept", "application/json")
            .body(Vec::new())
            .unwrap();
        let copy = forwarded(&request, Some(&context()));
        assert_eq!(
            copy.headers()[audit::ID],
            "0b9c9d34-4a0f-4b5e-9d8e-2f8f3b1b1a11"
        );
        assert_eq!(copy.headers()[audit::CLIENT_ADDRESS], "203.0.113.9");
        assert!(!copy.headers().contains_key(audit::AUDITED));
        assert_eq!(copy.headers()["accept"], "application/json");
        assert!(forwarded(&request, None)
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with("x-pm-")));
    }

    #[test]
    fn an_answer_is_recorded_once_and_withheld_when_it_cannot_be() {
        let kind = classify("patients", &Method::GET, &format!("/patients/{PATIENT}")).unwrap();
        let answer = || response::json(StatusCode::OK, &"record");
        let mut written = Vec::new();
        let out = settle(&context(), &kind, answer(), |e| {
            written.push(e.clone());
            Ok(())
        });
        assert_eq!(out.status(), StatusCode::OK);
        assert_eq!(written[0].patient_id.as_deref(), Some(PATIENT));
        assert_eq!(written[0].outcome, 200);

        let out = settle(&context(), &kind, answer(), |_| Err("postgres down".into()));
        assert_eq!(out.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(out.headers()[http::header::RETRY_AFTER], "1");

        let mut recorded = answer();
        audit::mark_audited(&mut recorded);
        audit::name_patient(&mut recorded, PATIENT);
        let out = settle(&context(), &kind, recorded, |_| panic!("written twice"));
        assert!(out
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with(audit::PREFIX)));
    }
}
