//! Domain types that validate on construction: an `Email` is trimmed, lower-cased and shaped
//! like an address; a `Role` is one of the two the platform knows; a new password has a minimum
//! length. Errors name the field, for problem+json `errors`.
use std::collections::BTreeMap;

use kit::fields::required;
pub use kit::fields::Email;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Clinician,
}

impl Role {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "ADMIN" => Ok(Role::Admin),
            "CLINICIAN" => Ok(Role::Clinician),
            _ => Err("must be ADMIN or CLINICIAN".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Clinician => "CLINICIAN",
        }
    }
}

pub const MIN_PASSWORD_LEN: usize = 8;
/// bcrypt reads at most 72 bytes; longer passwords would be silently truncated.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// Fields are optional here so that a missing one is reported like any other invalid field; the
/// schema states what the handler requires. Other fields are ignored.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub struct LoginBody {
    #[schema(value_type = String, required = true, max_length = 254, pattern = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+@[^@.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+(\.[^@.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+)+[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
    pub email: Option<String>,
    /// Not all whitespace.
    #[schema(value_type = String, required = true, pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$")]
    pub password: Option<String>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub struct NewUserBody {
    /// Unique among users, compared case-insensitively.
    #[schema(value_type = String, required = true, max_length = 254, pattern = r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+@[^@.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+(\.[^@.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+)+[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
    pub email: Option<String>,
    /// At least 8 characters and at most 72 bytes in UTF-8 (what bcrypt reads), not all
    /// whitespace.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 72, pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$")]
    pub password: Option<String>,
    #[schema(value_type = RoleName, required = true)]
    pub role: Option<String>,
}

/// The roles, for the document (`Role::parse` reads them).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "UPPERCASE")]
#[allow(dead_code)]
pub enum RoleName {
    Admin,
    Clinician,
}

pub struct Login {
    pub email: Email,
    pub password: String,
}

pub struct NewUser {
    pub email: Email,
    pub password: String,
    pub role: Role,
}

impl Login {
    pub fn parse(body: &LoginBody) -> Result<Self, BTreeMap<String, String>> {
        let mut errors = BTreeMap::new();
        let email = required(&mut errors, "email", &body.email).and_then(|e| {
            Email::parse(e)
                .map_err(|m| errors.insert("email".into(), m))
                .ok()
        });
        let password = required(&mut errors, "password", &body.password);
        match (email, password) {
            (Some(email), Some(password)) if errors.is_empty() => Ok(Self {
                email,
                password: password.to_string(),
            }),
            _ => Err(errors),
        }
    }
}

impl NewUser {
    pub fn parse(body: &NewUserBody) -> Result<Self, BTreeMap<String, String>> {
        let mut errors = BTreeMap::new();
        let email = required(&mut errors, "email", &body.email).and_then(|e| {
            Email::parse(e)
                .map_err(|m| errors.insert("email".into(), m))
                .ok()
        });
        let password = required(&mut errors, "password", &body.password).and_then(|p| {
            if p.chars().count() < MIN_PASSWORD_LEN {
                errors.insert(
                    "password".into(),
                    format!("must be at least {MIN_PASSWORD_LEN} characters"),
                );
                None
            } else if p.len() > MAX_PASSWORD_BYTES {
                errors.insert(
                    "password".into(),
                    format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
                );
                None
            } else {
                Some(p.to_string())
            }
        });
        let role = required(&mut errors, "role", &body.role).and_then(|r| {
            Role::parse(r)
                .map_err(|m| errors.insert("role".into(), m))
                .ok()
        });
        match (email, password, role) {
            (Some(email), Some(password), Some(role)) => Ok(Self {
                email,
                password,
                role,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_users_report_every_bad_field() {
        let body = NewUserBody {
            email: Some("x".into()),
            password: Some("short".into()),
            role: Some("NURSE".into()),
        };
        let errors = NewUser::parse(&body).err().unwrap();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["email", "password", "role"]
        );
        let ok = NewUserBody {
            email: Some("a@b.co".into()),
            password: Some("long enough".into()),
            role: Some("CLINICIAN".into()),
        };
        assert_eq!(NewUser::parse(&ok).ok().unwrap().role, Role::Clinician);
    }

    #[test]
    fn login_needs_both_fields() {
        let errors = Login::parse(&LoginBody {
            email: None,
            password: None,
        })
        .err()
        .unwrap();
        assert_eq!(errors.len(), 2);
    }
}
