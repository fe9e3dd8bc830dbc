//! The patient event (`proto/patient_event.proto`): written once here for its producer
//! (patients) and its consumers (appointments, analytics, the e2e tests), so they cannot drift.

/// Kafka topic of patient events (SPEC.md).
pub const TOPIC: &str = "patient";

/// The seed's protobuf `PatientEvent` plus an event id, a timestamp and the registered date.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PatientEvent {
    #[prost(string, tag = "1")]
    pub patient_id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub email: String,
    #[prost(string, tag = "4")]
    pub event_type: String,
    #[prost(string, tag = "5")]
    pub event_id: String,
    #[prost(string, tag = "6")]
    pub occurred_at: String,
    #[prost(string, tag = "7")]
    pub registered_date: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Created,
    Updated,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "PATIENT_CREATED",
            Self::Updated => "PATIENT_UPDATED",
            Self::Deleted => "PATIENT_DELETED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Created, Self::Updated, Self::Deleted]
            .into_iter()
            .find(|t| t.as_str() == raw)
    }
}

/// A received event that a consumer can act on: decoded, with a known type, an event id and a
/// patient id. Anything else is a poison record, which consumers log and skip (redelivering it
/// would never succeed and would hold up the partition).
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub kind: EventType,
    pub event: PatientEvent,
}

impl Received {
    pub fn decode(body: &[u8]) -> Result<Self, String> {
        let event: PatientEvent =
            prost::Message::decode(body).map_err(|e| format!("not a PatientEvent: {e}"))?;
        let kind = EventType::parse(&event.event_type)
            .ok_or_else(|| format!("unknown event type `{}`", event.event_type))?;
        if event.event_id.is_empty() || event.patient_id.is_empty() {
            return Err("event without an event id or patient id".into());
        }
        Ok(Self { kind, event })
    }

    /// The registered date, when the event carries one.
    pub fn registered_date(&self) -> Option<&str> {
        Some(self.event.registered_date.as_str()).filter(|d| !d.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str) -> PatientEvent {
        PatientEvent {
            patient_id: "p1".into(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            event_type: kind.into(),
            event_id: "e1".into(),
            occurred_at: "2026-11-25T10:00:00Z".into(),
            registered_date: String::new(),
        }
    }

    #[test]
    fn decodes_what_it_encodes_and_refuses_the_rest() {
        let bytes = prost::Message::encode_to_vec(&event("PATIENT_UPDATED"));
        let received = Received::decode(&bytes).unwrap();
        assert_eq!(received.kind, EventType::Updated);
        assert_eq!(received.registered_date(), None);
        // Field 1 (patientId) comes first on the wire, tagged as the seed's schema says.
        assert_eq!(bytes[0], (1 << 3) | 2);
        assert!(
            Received::decode(&prost::Message::encode_to_vec(&event("PATIENT_RENAMED"))).is_err()
        );
        assert!(Received::decode(b"\xff\xff not protobuf").is_err());
        let mut anonymous = event("PATIENT_CREATED");
        anonymous.event_id.clear();
        assert!(Received::decode(&prost::Message::encode_to_vec(&anonymous)).is_err());
    }
}
