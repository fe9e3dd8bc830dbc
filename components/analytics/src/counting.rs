//! What one patient event adds to the aggregates. Deciding it here, natively tested, keeps the
//! SQL to "add these numbers once per event id".
use patient_events::{EventType, Received};

/// The increments of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Increment {
    pub event_id: String,
    pub event_type: &'static str,
    pub patient_id: String,
    pub created: u8,
    pub updated: u8,
    pub deleted: u8,
    /// The day a registration counts on (`YYYY-MM-DD`): created events only.
    pub registered_on: Option<String>,
}

impl Increment {
    /// A created patient counts on its registered date or, for an event without one, on the
    /// day the event happened.
    pub fn of(received: &Received) -> Result<Self, String> {
        let event = &received.event;
        let registered_on = match received.kind {
            EventType::Created => {
                let day = received
                    .registered_date()
                    .or_else(|| event.occurred_at.get(..10))
                    .ok_or("a created event without a registered date or time")?;
                kit::fields::Date::parse(day).map_err(|e| format!("registered date: {e}"))?;
                Some(day.to_string())
            }
            _ => None,
        };
        Ok(Self {
            event_id: event.event_id.clone(),
            event_type: received.kind.as_str(),
            patient_id: event.patient_id.clone(),
            created: u8::from(received.kind == EventType::Created),
            updated: u8::from(received.kind == EventType::Updated),
            deleted: u8::from(received.kind == EventType::Deleted),
            registered_on,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patient_events::PatientEvent;

    fn received(kind: &str, registered: &str, occurred: &str) -> Result<Increment, String> {
        let event = PatientEvent {
            patient_id: "p1".into(),
            event_type: kind.into(),
            event_id: "e1".into(),
            occurred_at: occurred.into(),
            registered_date: registered.into(),
            ..PatientEvent::default()
        };
        Increment::of(&Received::decode(&prost::Message::encode_to_vec(&event))?)
    }

    #[test]
    fn created_counts_on_its_registered_date_others_on_no_day() {
        let created = received("PATIENT_CREATED", "2024-01-10", "2026-11-25T10:00:00Z").unwrap();
        assert_eq!(
            (created.created, created.updated, created.deleted),
            (1, 0, 0)
        );
        assert_eq!(created.registered_on.as_deref(), Some("2024-01-10"));
        let undated = received("PATIENT_CREATED", "", "2026-11-25T10:00:00Z").unwrap();
        assert_eq!(undated.registered_on.as_deref(), Some("2026-11-25"));
        let updated = received("PATIENT_UPDATED", "2024-01-11", "2026-11-25T10:00:00Z").unwrap();
        assert_eq!((updated.updated, updated.registered_on), (1, None));
        assert_eq!(received("PATIENT_DELETED", "", "").unwrap().deleted, 1);
        assert!(received("PATIENT_CREATED", "2024-13-01", "").is_err());
    }
}
