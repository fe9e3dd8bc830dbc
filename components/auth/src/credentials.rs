//! Domain types that validate on construction: an `Email` is trimmed, lower-cased and shaped
//! like an address; a `Role` is one of the two the platform knows; a new password has a minimum
//! length. Errors name the field, for problem+json `errors`.
use std::collections::BTreeMap;

use kit::fields::required;
pub use kit::fields::Email;
use serde::Deserialize;

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

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginBody {
    pub email: Option<String>,
    pub password: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewUserBody {
    pub email: Option<String>,
    pub password: Option<String>,
    pub role: Option<String>,
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
