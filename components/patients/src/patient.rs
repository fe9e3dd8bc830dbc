//! What a patient is and what a request must send to make or change one. `PatientInput` holds
//! only valid values: every rule of SPEC.md is checked when it is built, and each failure is
//! reported under its field.
use kit::fields::{check, required, Date, Email, FieldErrors};
use serde::{Deserialize, Serialize};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_ADDRESS_CHARS: usize = 255;

/// A stored patient, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    /// Server-assigned UUID.
    pub id: String,
    pub name: String,
    pub email: String,
    pub address: String,
    /// `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// `YYYY-MM-DD`.
    pub registered_date: String,
}

/// The JSON a client sends to create (`POST`) or replace (`PUT`) a patient. Fields are optional
/// here so that a missing one is reported like any other invalid field; the schema states what
/// the handler requires (`PatientUpdateBody` for `PUT`). Other fields are ignored.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatientBody {
    /// 1–100 characters, not all whitespace; stored trimmed.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100, pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$")]
    pub name: Option<String>,
    /// Unique among patients, compared case-insensitively; stored trimmed and lower-cased.
    #[schema(value_type = String, required = true, max_length = 254, pattern = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+@[^@.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+(\.[^@.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+)+[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
    pub email: Option<String>,
    /// 1–255 characters, not all whitespace; stored trimmed.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$")]
    pub address: Option<String>,
    /// `YYYY-MM-DD`, not in the future.
    #[schema(value_type = String, required = true, format = Date)]
    pub date_of_birth: Option<String>,
    /// `YYYY-MM-DD`; required on create, kept when absent on update.
    #[schema(value_type = String, required = true, format = Date)]
    pub registered_date: Option<String>,
}

/// What `PUT /patients/{id}` takes: `PatientBody` with `registeredDate` optional (kept when
/// absent). The handler reads both into `PatientBody`; this type only describes the update.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct PatientUpdateBody {
    /// 1–100 characters, not all whitespace; stored trimmed.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$"
    )]
    name: String,
    /// Unique among patients, compared case-insensitively; stored trimmed and lower-cased.
    #[schema(
        max_length = 254,
        pattern = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+@[^@.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+(\.[^@.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+)+[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    email: String,
    /// 1–255 characters, not all whitespace; stored trimmed.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$"
    )]
    address: String,
    /// `YYYY-MM-DD`, not in the future.
    #[schema(format = Date)]
    date_of_birth: String,
    /// `YYYY-MM-DD`; the stored date is kept when absent.
    #[schema(format = Date)]
    registered_date: Option<String>,
}

/// A valid patient's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatientInput {
    pub name: String,
    pub email: Email,
    pub address: String,
    pub date_of_birth: Date,
    /// `None` only on an update that keeps the stored date.
    pub registered_date: Option<Date>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Create,
    Update,
}

/// At most `max` characters as sent (what the schema's `maxLength` counts), stored trimmed.
fn bounded_text(value: &str, max: usize) -> Result<String, String> {
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    Ok(value.trim().to_string())
}

impl PatientInput {
    pub fn parse(body: &PatientBody, purpose: Purpose, today: Date) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = required(&mut errors, "name", &body.name);
        let name = check(&mut errors, "name", name, |v| {
            bounded_text(v, MAX_NAME_CHARS)
        });
        let email = required(&mut errors, "email", &body.email);
        let email = check(&mut errors, "email", email, Email::parse);
        let address = required(&mut errors, "address", &body.address);
        let address = check(&mut errors, "address", address, |v| {
            bounded_text(v, MAX_ADDRESS_CHARS)
        });
        let birth = required(&mut errors, "dateOfBirth", &body.date_of_birth);
        let date_of_birth = check(&mut errors, "dateOfBirth", birth, |v| {
            let date = Date::parse(v)?;
            if date > today {
                return Err("must not be in the future".into());
            }
            Ok(date)
        });
        let registered_date = match (purpose, &body.registered_date) {
            (Purpose::Update, None) => Some(None),
            _ => {
                let raw = required(&mut errors, "registeredDate", &body.registered_date);
                check(&mut errors, "registeredDate", raw, Date::parse).map(Some)
            }
        };
        match (name, email, address, date_of_birth, registered_date) {
            (
                Some(name),
                Some(email),
                Some(address),
                Some(date_of_birth),
                Some(registered_date),
            ) if errors.is_empty() => Ok(Self {
                name,
                email,
                address,
                date_of_birth,
                registered_date,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        Date::parse("2026-11-25").unwrap()
    }

    fn valid() -> PatientBody {
        PatientBody {
            name: Some("  Ada Lovelace ".into()),
            email: Some("Ada@Example.COM".into()),
            address: Some("1 Analytical St".into()),
            date_of_birth: Some("1815-12-10".into()),
            registered_date: Some("2026-11-25".into()),
        }
    }

    #[test]
    fn a_valid_body_is_normalised() {
        let input = PatientInput::parse(&valid(), Purpose::Create, today()).unwrap();
        assert_eq!(input.name, "Ada Lovelace");
        assert_eq!(input.email.as_str(), "ada@example.com");
        assert_eq!(input.registered_date.unwrap().to_string(), "2026-11-25");
    }

    #[test]
    fn every_rule_reports_its_field() {
        let cases: Vec<(&str, PatientBody)> = vec![
            (
                "name",
                PatientBody {
                    name: None,
                    ..valid()
                },
            ),
            (
                "name",
                PatientBody {
                    name: Some("   ".into()),
                    ..valid()
                },
            ),
            (
                "name",
                PatientBody {
                    name: Some("x".repeat(101)),
                    ..valid()
                },
            ),
            (
                "email",
                PatientBody {
                    email: Some("not-an-email".into()),
                    ..valid()
                },
            ),
            (
                "email",
                PatientBody {
                    email: None,
                    ..valid()
                },
            ),
            (
                "address",
                PatientBody {
                    address: None,
                    ..valid()
                },
            ),
            (
                "dateOfBirth",
                PatientBody {
                    date_of_birth: Some("2026-11-26".into()),
                    ..valid()
                },
            ),
            (
                "dateOfBirth",
                PatientBody {
                    date_of_birth: Some("10/12/1815".into()),
                    ..valid()
                },
            ),
            (
                "registeredDate",
                PatientBody {
                    registered_date: None,
                    ..valid()
                },
            ),
            (
                "registeredDate",
                PatientBody {
                    registered_date: Some("2026-02-30".into()),
                    ..valid()
                },
            ),
        ];
        for (field, body) in cases {
            let errors = PatientInput::parse(&body, Purpose::Create, today()).unwrap_err();
            assert_eq!(errors.keys().collect::<Vec<_>>(), [field], "{body:?}");
        }
        let none = PatientInput::parse(&PatientBody::default(), Purpose::Create, today());
        assert_eq!(none.unwrap_err().len(), 5);
    }

    #[test]
    fn a_100_character_name_and_a_birth_today_are_fine() {
        let body = PatientBody {
            name: Some("é".repeat(100)),
            date_of_birth: Some("2026-11-25".into()),
            ..valid()
        };
        assert!(PatientInput::parse(&body, Purpose::Create, today()).is_ok());
    }

    #[test]
    fn an_update_may_leave_out_the_registered_date() {
        let body = PatientBody {
            registered_date: None,
            ..valid()
        };
        let input = PatientInput::parse(&body, Purpose::Update, today()).unwrap();
        assert_eq!(input.registered_date, None);
    }
}
