//! The audit trail's shared vocabulary (issue 20): what a record holds, what the gateway tells a
//! service about a request it forwards, and what the service tells the gateway back.
//!
//! Who writes a request's one record:
//! - a service that changes data writes it in the transaction of the change, so a change and its
//!   record are committed together or not at all, and marks its answer [`AUDITED`];
//! - the gateway writes it for every other answer (reads, refusals, failures, changes that did
//!   not happen) before the answer leaves, and answers 503 instead when it cannot (fail closed).
//!
//! Both use the gateway's [`ID`] for the record, and the trail keeps one record per id.
use http::{HeaderMap, HeaderValue, Request, Response};

/// Request headers the gateway sets on what it forwards (after removing any the client sent).
pub const ID: &str = "x-pm-audit-id";
pub const ACTION: &str = "x-pm-audit-action";
pub const RESOURCE_TYPE: &str = "x-pm-audit-resource-type";
pub const CLIENT_ADDRESS: &str = "x-pm-client-address";

/// Answer headers a service sets for the gateway (which removes them before answering).
/// The service has written the record itself.
pub const AUDITED: &str = "x-pm-audited";
/// The resource the request concerned, when the path does not name it (a created patient).
pub const RESOURCE_ID: &str = "x-pm-audit-resource";
/// The patient the request concerned (an appointment's patient).
pub const PATIENT_ID: &str = "x-pm-audit-patient";
/// Who the caller turned out to be (a login names the user it signed in).
pub const ACTOR: &str = "x-pm-audit-actor";
pub const ACTOR_ROLE: &str = "x-pm-audit-actor-role";

/// Every header of this protocol starts so; the gateway removes them on the way in and out.
pub const PREFIX: &str = "x-pm-audit";

/// Who made a request, as the gateway established it from a verified token. Carried in the
/// request extensions of a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub role: String,
}

/// The gateway's request id, carried in the request extensions of a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// One audit record, as written (the trail adds its sequence number, time and hashes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    /// The token's subject, `None` for an anonymous caller.
    pub actor: Option<String>,
    pub actor_role: Option<String>,
    /// `<resource type>.<verb>`, e.g. `patient.read`, `auth.login`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub patient_id: Option<String>,
    /// The HTTP status the caller got.
    pub outcome: u16,
    pub request_id: String,
    pub client_address: String,
}

/// What the gateway said about a request it forwarded: a service needs it to write the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub id: String,
    pub action: String,
    pub resource_type: String,
    pub client_address: String,
    pub actor: Option<Principal>,
    pub request_id: String,
}

impl Context {
    /// The context of a request the gateway forwarded as an audited request; `None` for one it
    /// did not (a service's own call to another, `/openapi.json`), which then records nothing.
    pub fn of(request: &Request<Vec<u8>>) -> Option<Context> {
        let headers = request.headers();
        Some(Context {
            id: header(headers, ID)?,
            action: header(headers, ACTION)?,
            resource_type: header(headers, RESOURCE_TYPE)?,
            client_address: header(headers, CLIENT_ADDRESS)?,
            actor: request.extensions().get::<Principal>().cloned(),
            request_id: request
                .extensions()
                .get::<RequestId>()
                .map(|id| id.0.clone())
                .unwrap_or_default(),
        })
    }

    /// The headers that carry this context to a service.
    pub fn headers(&self) -> [(&'static str, &str); 4] {
        [
            (ID, &self.id),
            (ACTION, &self.action),
            (RESOURCE_TYPE, &self.resource_type),
            (CLIENT_ADDRESS, &self.client_address),
        ]
    }

    /// The record of this request with its outcome.
    pub fn entry(
        &self,
        outcome: u16,
        resource_id: Option<&str>,
        patient_id: Option<&str>,
    ) -> Entry {
        Entry {
            id: self.id.clone(),
            actor: self.actor.as_ref().map(|p| p.subject.clone()),
            actor_role: self.actor.as_ref().map(|p| p.role.clone()),
            action: self.action.clone(),
            resource_type: self.resource_type.clone(),
            resource_id: resource_id.map(str::to_string),
            patient_id: patient_id.map(str::to_string),
            outcome,
            request_id: self.request_id.clone(),
            client_address: self.client_address.clone(),
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    Some(headers.get(name)?.to_str().ok()?.to_string())
}

/// `response`, marked as recorded when the service wrote `entry` with its change.
pub fn recorded(mut response: Response<Vec<u8>>, entry: Option<&Entry>) -> Response<Vec<u8>> {
    if entry.is_some() {
        mark_audited(&mut response);
    }
    response
}

/// Marks an answer whose record the service wrote with its change.
pub fn mark_audited(response: &mut Response<Vec<u8>>) {
    response
        .headers_mut()
        .insert(AUDITED, HeaderValue::from_static("1"));
}

/// Tells the gateway which patient an answer concerned (its record's patient).
pub fn name_patient(response: &mut Response<Vec<u8>>, patient_id: &str) {
    if let Ok(value) = HeaderValue::from_str(patient_id) {
        response.headers_mut().insert(PATIENT_ID, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(with_context: bool) -> Request<Vec<u8>> {
        let mut builder = Request::post("/patients");
        if with_context {
            builder = builder
                .header(ID, "0b9c9d34-4a0f-4b5e-9d8e-2f8f3b1b1a11")
                .header(ACTION, "patient.create")
                .header(RESOURCE_TYPE, "patient")
                .header(CLIENT_ADDRESS, "203.0.113.9");
        }
        let mut request = builder.body(Vec::new()).unwrap();
        request.extensions_mut().insert(Principal {
            subject: "nurse@clinic.test".into(),
            role: "CLINICIAN".into(),
        });
        request.extensions_mut().insert(RequestId("req-1".into()));
        request
    }

    #[test]
    fn a_forwarded_request_gives_the_record_of_its_outcome() {
        let context = Context::of(&forwarded(true)).unwrap();
        let entry = context.entry(201, Some("p-1"), Some("p-1"));
        assert_eq!(entry.actor.as_deref(), Some("nurse@clinic.test"));
        assert_eq!(entry.actor_role.as_deref(), Some("CLINICIAN"));
        assert_eq!(entry.action, "patient.create");
        assert_eq!((entry.outcome, entry.request_id.as_str()), (201, "req-1"));
        assert_eq!(entry.client_address, "203.0.113.9");
    }

    #[test]
    fn a_request_without_the_gateways_headers_records_nothing() {
        assert_eq!(Context::of(&forwarded(false)), None);
    }

    #[test]
    fn every_header_of_the_protocol_shares_the_prefix_but_the_client_address() {
        for name in [
            ID,
            ACTION,
            RESOURCE_TYPE,
            AUDITED,
            RESOURCE_ID,
            PATIENT_ID,
            ACTOR,
            ACTOR_ROLE,
        ] {
            assert!(name.starts_with(PREFIX), "{name}");
        }
    }
}
