//! `GET /audit` parameters: who (`actor`), what (`action`), which patient (`patient`), when
//! (`from` inclusive, `to` exclusive, RFC 3339; a window that ends before it starts holds
//! nothing), and the page: `size` records, newest first,
//! older than the cursor `before` (the `next` of the page before). Anything else is a 400 naming
//! the parameter.
use kit::fields::{parse_uuid, storable, FieldErrors};
use kit::instant::Instant;
use kit::request::query_pairs;

pub const DEFAULT_SIZE: u32 = 50;
pub const MAX_SIZE: u32 = 200;
/// An email is at most 320 characters; a subject longer than that names no one.
pub const MAX_ACTOR_CHARS: usize = 320;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub patient: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub from: Option<Instant>,
    pub to: Option<Instant>,
    pub size: u32,
    /// Only records older than this one (its sequence number).
    pub before: Option<i64>,
}

impl Filter {
    pub fn parse(query: Option<&str>) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut filter = Filter {
            patient: None,
            actor: None,
            action: None,
            from: None,
            to: None,
            size: DEFAULT_SIZE,
            before: None,
        };
        for (key, value) in query_pairs(query) {
            let outcome = match key.as_str() {
                "patient" => parse_uuid(&value)
                    .ok_or_else(|| "must be a patient id (UUID)".to_string())
                    .map(|id| filter.patient = Some(id)),
                "actor" => actor(&value).map(|a| filter.actor = Some(a)),
                "action" => action(&value).map(|a| filter.action = Some(a)),
                "from" => Instant::parse(&value).map(|at| filter.from = Some(at)),
                "to" => Instant::parse(&value).map(|at| filter.to = Some(at)),
                "size" => whole(&value, MAX_SIZE.into()).map(|n| filter.size = n as u32),
                "before" => whole(&value, i64::MAX as u64).map(|n| filter.before = Some(n as i64)),
                _ => Err(
                    "is not a parameter of this route (patient, actor, action, from, to, size, before)"
                        .into(),
                ),
            };
            if let Err(message) = outcome {
                errors.insert(key, message);
            }
        }
        if errors.is_empty() {
            Ok(filter)
        } else {
            Err(errors)
        }
    }
}

/// Digits only, from 1 to `max`, as the document's `integer` reads.
fn whole(raw: &str, max: u64) -> Result<u64, String> {
    match raw.parse::<u64>() {
        Ok(n) if raw.bytes().all(|b| b.is_ascii_digit()) && (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from 1 to {max}")),
    }
}

fn actor(raw: &str) -> Result<String, String> {
    let actor = storable(raw.trim())?;
    if actor.is_empty() || actor.chars().count() > MAX_ACTOR_CHARS {
        return Err(format!("must be 1 to {MAX_ACTOR_CHARS} characters"));
    }
    Ok(actor.to_string())
}

/// `<resource type>.<verb>`, lower case, as the records spell them (`patient.read`).
fn action(raw: &str) -> Result<String, String> {
    let well_formed = raw.len() <= 64
        && raw.split_once('.').is_some_and(|(kind, verb)| {
            let word =
                |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
            word(kind) && word(verb)
        });
    if well_formed {
        Ok(raw.to_string())
    } else {
        Err("must be an action such as patient.read (resource type, a dot, a verb)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_parameter() {
        assert_eq!(Filter::parse(None).unwrap().size, DEFAULT_SIZE);
        let f = Filter::parse(Some(
            "patient=123E4567-E89B-12D3-A456-426614174000&actor=a%40b.test&action=patient.read\
             &from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00%2B01:00&size=5&before=99",
        ))
        .unwrap();
        assert_eq!(
            f.patient.as_deref(),
            Some("123e4567-e89b-12d3-a456-426614174000")
        );
        assert_eq!(f.actor.as_deref(), Some("a@b.test"));
        assert_eq!(f.action.as_deref(), Some("patient.read"));
        assert_eq!((f.size, f.before), (5, Some(99)));
        assert_eq!(f.to.unwrap().to_rfc3339(), "2026-01-31T23:00:00Z");
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, field) in [
            ("patient=42", "patient"),
            ("actor=", "actor"),
            ("actor=a%00b", "actor"),
            ("action=read", "action"),
            ("action=Patient.read", "action"),
            ("from=yesterday", "from"),
            ("size=0", "size"),
            ("size=201", "size"),
            ("before=-1", "before"),
            ("before=%2B5", "before"),
            ("colour=red", "colour"),
        ] {
            let errors = Filter::parse(Some(query)).unwrap_err();
            assert_eq!(errors.keys().collect::<Vec<_>>(), [field], "{query}");
        }
    }
}
