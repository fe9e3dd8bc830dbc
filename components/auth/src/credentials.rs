//! Domain types that validate on construction: an `Email` is trimmed, lower-cased and shaped
//! like an address; a `Role` is one of the two the platform knows; a new password follows
//! current guidance (NIST SP 800-63B): long enough, no composition rules, and not a commonly
//! used one (a list from breach corpora) nor one made of the user's email. Errors name the
//! field, for problem+json `errors`.
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

pub const MIN_PASSWORD_LEN: usize = 12;
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
    /// A new password (see [`PasswordBody`]).
    #[schema(value_type = String, required = true, min_length = 12, max_length = 72, pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$")]
    pub password: Option<String>,
    #[schema(value_type = RoleName, required = true)]
    pub role: Option<String>,
}

/// A password an admin sets for a user (`POST /auth/users/{id}/password`).
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub struct PasswordBody {
    /// At least 12 characters and at most 72 bytes in UTF-8 (what bcrypt reads), and not easy
    /// to guess: a commonly used password, or one containing the user's email name, is refused
    /// with the reason.
    #[schema(value_type = String, required = true, min_length = 12, max_length = 72, pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$")]
    pub password: Option<String>,
}

/// A user changing their own password (`PUT /auth/password`).
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChangeBody {
    /// The password now.
    #[schema(value_type = String, required = true, pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$")]
    pub current_password: Option<String>,
    /// The new one, by the rules of [`PasswordBody`], and not the current one.
    #[schema(value_type = String, required = true, min_length = 12, max_length = 72, pattern = r"^[^\u0000]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000][^\u0000]*$")]
    pub new_password: Option<String>,
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
        let password = new_password(
            &mut errors,
            "password",
            &body.password,
            email.as_ref().map(Email::as_str),
        );
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

/// A new password in `field` of a body, checked by the rules above; `email` is its user's
/// (a password made of it is easy to guess). `None` with the reason in `errors` when refused.
pub fn new_password(
    errors: &mut BTreeMap<String, String>,
    field: &str,
    value: &Option<String>,
    email: Option<&str>,
) -> Option<String> {
    let password = required(errors, field, value)?;
    let refusal = if password.chars().count() < MIN_PASSWORD_LEN {
        Some(format!("must be at least {MIN_PASSWORD_LEN} characters"))
    } else if password.len() > MAX_PASSWORD_BYTES {
        Some(format!("must be at most {MAX_PASSWORD_BYTES} bytes"))
    } else {
        guessable(password, email)
    };
    match refusal {
        Some(why) => {
            errors.insert(field.into(), why);
            None
        }
        None => Some(password.to_string()),
    }
}

/// Why `password` is easy to guess, if it is: it is on a list of commonly used passwords (the
/// `passwords` crate's, from breach corpora), or it contains its user's email name.
fn guessable(password: &str, email: Option<&str>) -> Option<String> {
    if passwords::analyzer::analyze(password).is_common() {
        return Some("is too easy to guess: it is a commonly used password".into());
    }
    let lower = password.to_lowercase();
    let name = email.and_then(|e| e.split('@').next()).unwrap_or_default();
    let joined = name.replace(['.', '-', '_', '+'], "");
    if [name, joined.as_str()]
        .iter()
        .any(|n| n.len() >= 3 && lower.contains(n))
    {
        return Some("is too easy to guess: it contains the name of the email".into());
    }
    None
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
            password: Some("correct horse battery".into()),
            role: Some("CLINICIAN".into()),
        };
        assert_eq!(NewUser::parse(&ok).ok().unwrap().role, Role::Clinician);
    }

    #[test]
    fn common_short_or_personal_passwords_are_refused_with_the_reason() {
        let check = |password: &str| {
            let mut errors = BTreeMap::new();
            new_password(
                &mut errors,
                "password",
                &Some(password.into()),
                Some("ada.lovelace@clinic.test"),
            );
            errors.remove("password")
        };
        for weak in [
            "password123456",
            "qwertyuiop123",
            "aaaaaaaaaaaaaaaa",
            "iloveyou1234",
            "adalovelace2024",
        ] {
            let why = check(weak).unwrap_or_else(|| panic!("{weak} was accepted"));
            assert!(why.starts_with("is too easy to guess"), "{weak}: {why}");
        }
        assert!(check("short").unwrap().contains("at least 12"));
        assert!(check(&"é".repeat(37)).unwrap().contains("at most 72 bytes"));
        for strong in ["correct horse battery", "clinic-rota-7-tulips"] {
            assert_eq!(check(strong), None, "{strong}");
        }
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
