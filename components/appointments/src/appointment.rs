//! What an appointment is and what a request must send to make or change one (SPEC.md
//! "Appointments"). `AppointmentInput` holds only valid values; each failed rule is reported
//! under its field. The database checks the same bounds again (and overlaps, which only it can).
use kit::fields::{check, parse_uuid, required, FieldErrors};
pub use kit::instant::Instant;
use serde::{Deserialize, Serialize};
use time::Duration;

pub const MAX_REASON_CHARS: usize = 255;
pub const MAX_LENGTH: Duration = Duration::hours(8);

/// A stored appointment, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Appointment {
    pub id: String,
    pub patient_id: String,
    /// From the local copy of patients (fed by patient events); `null` until the patient's
    /// first event has been consumed.
    pub patient_name: Option<String>,
    /// RFC 3339, UTC, to the second.
    pub start_time: String,
    pub end_time: String,
    pub reason: String,
    /// `SCHEDULED` or `CANCELLED`.
    pub status: String,
    /// Send it back on `PUT`; a write that does not match the stored version is refused (409).
    pub version: i64,
}

/// The JSON a client sends to create (`POST`) or change (`PUT`) an appointment. Fields are
/// optional here so that a missing one is reported like any other invalid field; the schema
/// states what the handler requires (`AppointmentUpdateBody` for `PUT`). Other fields are ignored.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppointmentBody {
    /// An existing patient's id (UUID).
    #[schema(value_type = String, required = true, format = Uuid)]
    pub patient_id: Option<String>,
    /// RFC 3339 with an offset; in the future.
    #[schema(value_type = String, required = true, format = DateTime)]
    pub start_time: Option<String>,
    /// RFC 3339 with an offset; after the start, at most 8 hours later.
    #[schema(value_type = String, required = true, format = DateTime)]
    pub end_time: Option<String>,
    /// 1–255 characters, not all whitespace; stored trimmed.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$")]
    pub reason: Option<String>,
    /// Required on `PUT`: the version last read. Ignored on `POST`.
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub version: Option<i64>,
}

/// What `PUT /appointments/{id}` takes: `AppointmentBody` with `version` required and
/// `patientId` optional (it cannot change). The handler reads both into `AppointmentBody`.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct AppointmentUpdateBody {
    /// The appointment's patient (UUID); it cannot change, so it may be left out.
    #[schema(format = Uuid)]
    patient_id: Option<String>,
    /// RFC 3339 with an offset; in the future.
    #[schema(format = DateTime)]
    start_time: String,
    /// RFC 3339 with an offset; after the start, at most 8 hours later.
    #[schema(format = DateTime)]
    end_time: String,
    /// 1–255 characters, not all whitespace; stored trimmed.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$"
    )]
    reason: String,
    /// The version last read; a write that does not match the stored version is refused (409).
    #[schema(minimum = 1)]
    version: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Create,
    Update,
}

/// A valid appointment's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppointmentInput {
    /// `None` only on an update that left it out.
    pub patient_id: Option<String>,
    pub start: Instant,
    pub end: Instant,
    pub reason: String,
    /// `Some` exactly on updates.
    pub version: Option<i64>,
}

impl AppointmentInput {
    pub fn parse(
        body: &AppointmentBody,
        purpose: Purpose,
        now: Instant,
    ) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let patient_id = match (purpose, &body.patient_id) {
            (Purpose::Update, None) => Some(None),
            _ => {
                let raw = required(&mut errors, "patientId", &body.patient_id);
                check(&mut errors, "patientId", raw, |v| {
                    parse_uuid(v).ok_or_else(|| "must be a patient id (UUID)".to_string())
                })
                .map(Some)
            }
        };
        let start = required(&mut errors, "startTime", &body.start_time);
        let start = check(&mut errors, "startTime", start, Instant::parse);
        let end = required(&mut errors, "endTime", &body.end_time);
        let end = check(&mut errors, "endTime", end, Instant::parse);
        if let Some(start) = start {
            if start <= now {
                errors.insert("startTime".into(), "must be in the future".into());
            }
        }
        if let (Some(start), Some(end)) = (start, end) {
            if end <= start {
                errors.insert("endTime".into(), "must be after startTime".into());
            } else if end.since(start) > MAX_LENGTH {
                errors.insert(
                    "endTime".into(),
                    "must be at most 8 hours after startTime".into(),
                );
            }
        }
        let reason = required(&mut errors, "reason", &body.reason);
        let reason = check(&mut errors, "reason", reason, |v| {
            if v.chars().count() > MAX_REASON_CHARS {
                Err(format!("must be at most {MAX_REASON_CHARS} characters"))
            } else {
                Ok(v.trim().to_string())
            }
        });
        let version = match (purpose, body.version) {
            (Purpose::Create, _) => Some(None),
            (Purpose::Update, Some(v)) if v >= 1 => Some(Some(v)),
            (Purpose::Update, Some(_)) => {
                errors.insert(
                    "version".into(),
                    "must be a version this API returned (1 or more)".into(),
                );
                None
            }
            (Purpose::Update, None) => {
                errors.insert(
                    "version".into(),
                    "is required (the version last read)".into(),
                );
                None
            }
        };
        match (patient_id, start, end, reason, version) {
            (Some(patient_id), Some(start), Some(end), Some(reason), Some(version))
                if errors.is_empty() =>
            {
                Ok(Self {
                    patient_id,
                    start,
                    end,
                    reason,
                    version,
                })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Instant {
        Instant::parse("2030-01-01T00:00:00Z").unwrap()
    }

    fn body(start: &str, end: &str) -> AppointmentBody {
        AppointmentBody {
            patient_id: Some("123E4567-E89B-12D3-A456-426614174000".into()),
            start_time: Some(start.into()),
            end_time: Some(end.into()),
            reason: Some("  Check-up ".into()),
            version: None,
        }
    }

    fn errors(body: &AppointmentBody, purpose: Purpose) -> Vec<(String, String)> {
        AppointmentInput::parse(body, purpose, now())
            .unwrap_err()
            .into_iter()
            .collect()
    }

    #[test]
    fn instants_stay_within_the_years_postgres_and_rfc_3339_share() {
        for outside in ["0001-01-01T00:00:00+09:00", "9999-12-31T23:00:00-05:00"] {
            assert!(Instant::parse(outside).is_err(), "{outside}");
        }
        for inside in ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
            let at = Instant::parse(inside).unwrap();
            assert_eq!(at.to_rfc3339(), inside);
        }
    }

    #[test]
    fn a_valid_body_is_normalised_to_utc_seconds() {
        let input = AppointmentInput::parse(
            &body("2030-01-02T10:00:00.750+01:00", "2030-01-02T10:30:00+01:00"),
            Purpose::Create,
            now(),
        )
        .unwrap();
        assert_eq!(
            input.patient_id.as_deref(),
            Some("123e4567-e89b-12d3-a456-426614174000")
        );
        assert_eq!(input.start.to_rfc3339(), "2030-01-02T09:00:00Z");
        assert_eq!(input.reason, "Check-up");
        assert_eq!(input.version, None);
    }

    #[test]
    fn each_rule_is_reported_under_its_field() {
        let past = errors(
            &body("2029-12-31T23:00:00Z", "2029-12-31T23:30:00Z"),
            Purpose::Create,
        );
        assert_eq!(
            past,
            vec![("startTime".into(), "must be in the future".into())]
        );
        let backwards = errors(
            &body("2030-01-02T10:00:00Z", "2030-01-02T10:00:00Z"),
            Purpose::Create,
        );
        assert_eq!(
            backwards,
            vec![("endTime".into(), "must be after startTime".into())]
        );
        let long = errors(
            &body("2030-01-02T08:00:00Z", "2030-01-02T16:00:01Z"),
            Purpose::Create,
        );
        assert_eq!(long[0].0, "endTime");
        assert!(AppointmentInput::parse(
            &body("2030-01-02T08:00:00Z", "2030-01-02T16:00:00Z"),
            Purpose::Create,
            now()
        )
        .is_ok());
        let garbled = errors(&body("tomorrow", "2030-01-02T16:00:00"), Purpose::Create);
        assert_eq!(
            garbled.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            ["endTime", "startTime"]
        );

        let mut bad = body("2030-01-02T10:00:00Z", "2030-01-02T11:00:00Z");
        bad.patient_id = Some("42".into());
        bad.reason = Some("x".repeat(256));
        let fields: Vec<String> = errors(&bad, Purpose::Create)
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(fields, ["patientId", "reason"]);
        bad.reason = Some("   ".into());
        assert_eq!(
            errors(&bad, Purpose::Create)[1],
            ("reason".into(), "is required".into())
        );
        assert!(
            AppointmentInput::parse(&AppointmentBody::default(), Purpose::Create, now())
                .unwrap_err()
                .len()
                == 4
        );
    }

    #[test]
    fn updates_need_a_version_and_may_leave_the_patient_out() {
        let mut update = body("2030-01-02T10:00:00Z", "2030-01-02T11:00:00Z");
        update.patient_id = None;
        assert_eq!(
            errors(&update, Purpose::Update),
            vec![(
                "version".into(),
                "is required (the version last read)".into()
            )]
        );
        update.version = Some(0);
        assert_eq!(errors(&update, Purpose::Update)[0].0, "version");
        update.version = Some(3);
        let input = AppointmentInput::parse(&update, Purpose::Update, now()).unwrap();
        assert_eq!((input.patient_id, input.version), (None, Some(3)));
    }
}
