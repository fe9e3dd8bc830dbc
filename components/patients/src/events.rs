//! What patients hands on after a write: the Kafka event and the billing calls. They are written
//! to the outbox in the same statement as the patient (so neither can drift from it) and relayed
//! from there; `OutboxEntry` is one such row.
use serde::{Deserialize, Serialize};

pub use patient_events::{EventType, PatientEvent, TOPIC};

/// One thing to deliver after a commit, stored as an outbox row (`kind` + JSON `payload`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "kebab-case")]
pub enum Delivery {
    /// Publish this event on `TOPIC`, keyed by patient id (so one patient's events stay in order).
    Event(EventPayload),
    /// `billing.create-account`.
    BillingOpen {
        #[serde(rename = "patientId")]
        patient_id: String,
        name: String,
        email: String,
    },
    /// `billing.close-account`.
    BillingClose {
        #[serde(rename = "patientId")]
        patient_id: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPayload {
    pub event_id: String,
    pub event_type: String,
    pub patient_id: String,
    pub name: String,
    pub email: String,
    pub occurred_at: String,
    /// On created events, and on updates that set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_date: Option<String>,
}

impl EventPayload {
    pub fn to_protobuf(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&PatientEvent {
            patient_id: self.patient_id.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            event_type: self.event_type.clone(),
            event_id: self.event_id.clone(),
            occurred_at: self.occurred_at.clone(),
            registered_date: self.registered_date.clone().unwrap_or_default(),
        })
    }
}

impl Delivery {
    /// Outbox rows of one patient are relayed in order per channel: events in one, billing calls
    /// (open before close) in the other, so a slow channel does not hold up the other.
    pub fn channel(&self) -> &'static str {
        match self {
            Self::Event(_) => "event",
            Self::BillingOpen { .. } | Self::BillingClose { .. } => "billing",
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Event(_) => "event",
            Self::BillingOpen { .. } => "billing-open",
            Self::BillingClose { .. } => "billing-close",
        }
    }

    /// The JSON stored in the outbox's `payload` column.
    pub fn payload_json(&self) -> String {
        let tagged = serde_json::to_value(self).expect("deliveries serialize");
        tagged["payload"].to_string()
    }

    /// Back from an outbox row.
    pub fn from_row(kind: &str, payload: &str) -> Result<Self, String> {
        let payload: serde_json::Value =
            serde_json::from_str(payload).map_err(|e| format!("outbox payload: {e}"))?;
        serde_json::from_value(serde_json::json!({ "kind": kind, "payload": payload }))
            .map_err(|e| format!("outbox row of kind {kind}: {e}"))
    }
}

/// A delivery with the id of its outbox row.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEntry {
    pub id: String,
    pub patient_id: String,
    pub delivery: Delivery,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> EventPayload {
        EventPayload {
            event_id: "e1".into(),
            event_type: EventType::Created.as_str().into(),
            patient_id: "p1".into(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            occurred_at: "2026-11-25T10:00:00Z".into(),
            registered_date: Some("2026-11-01".into()),
        }
    }

    #[test]
    fn the_event_decodes_as_the_seeds_message_plus_id_and_time() {
        let bytes = event().to_protobuf();
        let decoded: PatientEvent = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.patient_id, "p1");
        assert_eq!(decoded.event_type, "PATIENT_CREATED");
        assert_eq!(decoded.event_id, "e1");
        assert_eq!(decoded.registered_date, "2026-11-01");
    }

    #[test]
    fn deliveries_round_trip_through_outbox_rows() {
        for delivery in [
            Delivery::Event(event()),
            Delivery::BillingOpen {
                patient_id: "p1".into(),
                name: "Ada".into(),
                email: "ada@example.com".into(),
            },
            Delivery::BillingClose {
                patient_id: "p1".into(),
            },
        ] {
            let back = Delivery::from_row(delivery.kind(), &delivery.payload_json()).unwrap();
            assert_eq!(back, delivery);
        }
        assert_eq!(Delivery::Event(event()).channel(), "event");
        assert!(Delivery::from_row("nonsense", "{}").is_err());
    }
}
