//! Field types every component validates the same way: they validate on construction and their
//! errors are the messages of problem+json `errors` (one per field).
use std::collections::BTreeMap;
use std::fmt;

/// Per-field messages of a failed validation, in field order.
pub type FieldErrors = BTreeMap<String, String>;

/// Why a text holding NUL is refused: Postgres text cannot store it.
pub const NO_NUL: &str = "must not contain the NUL character (U+0000)";

/// `value` unless it holds NUL, which no store here can keep (query parameters; bodies are
/// checked whole by `request::json_body`).
pub fn storable(value: &str) -> Result<&str, String> {
    if value.contains('\0') {
        Err(NO_NUL.into())
    } else {
        Ok(value)
    }
}

/// The characters Rust's `char::is_whitespace` counts (Unicode White_Space), spelled so that
/// ECMAScript's and Python's regular expressions read them alike (their own `\s` each differ a
/// little from Unicode's). The OpenAPI patterns below are built from it, so the documents state
/// exactly the rules the handlers apply (`trim`, "is required" for a blank value).
pub const SPACE_CLASS: &str =
    r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// OpenAPI `pattern` of a value that is not blank (one character that is not whitespace) and holds
/// no NUL (which Postgres text cannot store). Written out as a literal in the schemas (utoipa takes
/// literals); tests compare them with this.
pub const NOT_BLANK_PATTERN: &str = concat!(
    r"^[^\u0000]*[^",
    r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000",
    r"\u0000][^\u0000]*$"
);

/// OpenAPI `pattern` of what `Email::parse` accepts: optional surrounding whitespace, a local part
/// and a domain of two or more dot-separated labels, no whitespace, NUL or second `@` inside.
pub const EMAIL_PATTERN: &str = concat!(
    r"^[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*",
    r"[^@\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+@",
    r"[^@.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+",
    r"(\.[^@.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000]+)+",
    r"[\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
);

/// Longest email address, in characters as sent (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// An email address, trimmed and lower-cased, so comparisons are case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().count() > MAX_EMAIL_CHARS {
            return Err(format!("must be at most {MAX_EMAIL_CHARS} characters"));
        }
        let email = raw.trim().to_lowercase();
        let (local, domain) = email
            .split_once('@')
            .ok_or("must be a valid email address")?;
        let valid = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !email.contains(char::is_whitespace)
            && email.matches('@').count() == 1;
        if valid {
            Ok(Self(email))
        } else {
            Err("must be a valid email address".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A calendar date (`YYYY-MM-DD`, proleptic Gregorian), ordered by time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

impl Date {
    /// Exactly `YYYY-MM-DD` naming a day that exists.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let invalid = || "must be a date as YYYY-MM-DD".to_string();
        let bytes = raw.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(invalid());
        }
        let number = |range: std::ops::Range<usize>| -> Result<u32, String> {
            let part = &raw[range];
            if part.bytes().all(|b| b.is_ascii_digit()) {
                part.parse().map_err(|_| invalid())
            } else {
                Err(invalid())
            }
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        // Year 0 is not a year of the calendar people (or Python's dates) use.
        if year == 0
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year as i32, month)
        {
            return Err(format!("{raw} is not a day of the calendar"));
        }
        Ok(Self {
            year: year as i32,
            month: month as u8,
            day: day as u8,
        })
    }

    /// The UTC day that contains `unix_secs`.
    pub fn from_unix_secs(unix_secs: u64) -> Self {
        let (y, m, d) = crate::time::civil_from_days((unix_secs / 86_400) as i64);
        Self {
            year: y as i32,
            month: m as u8,
            day: d as u8,
        }
    }

    /// Today in UTC, by the clock the component sees (wasi:clocks in a component).
    pub fn today() -> Self {
        Self::from_unix_secs(crate::time::now_secs())
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A UUID as text (any version, hyphenated, as Postgres prints them), lower-cased; `None` when
/// `raw` is not one, so a path id can be a 400 before any query runs.
pub fn parse_uuid(raw: &str) -> Option<String> {
    let lower = raw.to_ascii_lowercase();
    let groups: Vec<&str> = lower.split('-').collect();
    let shaped = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()));
    shaped.then_some(lower)
}

/// The value of a required text field (as sent: a password keeps its spaces), or "is required"
/// under `field` in `errors` when it is missing or blank.
pub fn required<'a>(
    errors: &mut FieldErrors,
    field: &str,
    value: &'a Option<String>,
) -> Option<&'a str> {
    match value.as_deref() {
        Some(v) if !v.trim().is_empty() => Some(v),
        _ => {
            errors.insert(field.into(), "is required".into());
            None
        }
    }
}

/// Runs `parse` on a present value, recording its message under `field` on failure.
pub fn check<T>(
    errors: &mut FieldErrors,
    field: &str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    parse(value?)
        .map_err(|m| errors.insert(field.into(), m))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The characters of a class body such as `SPACE_CLASS` (escapes, `\uXXXX`, ranges).
    fn class_chars(class: &str) -> std::collections::BTreeSet<char> {
        let mut singles = Vec::new();
        let mut rest = class;
        while let Some(c) = rest.chars().next() {
            let (ch, len) = match (c, rest.as_bytes().get(1)) {
                ('\\', Some(b'u')) => (
                    char::from_u32(u32::from_str_radix(&rest[2..6], 16).unwrap()).unwrap(),
                    6,
                ),
                ('\\', Some(b't')) => ('\t', 2),
                ('\\', Some(b'n')) => ('\n', 2),
                ('\\', Some(b'f')) => ('\u{c}', 2),
                ('\\', Some(b'r')) => ('\r', 2),
                ('-', _) => ('-', 1),
                (c, _) => (c, c.len_utf8()),
            };
            singles.push(ch);
            rest = &rest[len..];
        }
        let mut set = std::collections::BTreeSet::new();
        let mut i = 0;
        while i < singles.len() {
            if i + 2 < singles.len() && singles[i + 1] == '-' {
                set.extend(singles[i]..=singles[i + 2]);
                i += 3;
            } else {
                set.insert(singles[i]);
                i += 1;
            }
        }
        set
    }

    #[test]
    fn the_space_class_is_exactly_rusts_whitespace() {
        let rust: std::collections::BTreeSet<char> = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .collect();
        assert_eq!(class_chars(SPACE_CLASS), rust);
        let (s, nul) = (SPACE_CLASS, r"\u0000");
        assert_eq!(
            NOT_BLANK_PATTERN,
            format!("^[^{nul}]*[^{s}{nul}][^{nul}]*$")
        );
        assert_eq!(
            EMAIL_PATTERN,
            format!("^[{s}]*[^@{s}{nul}]+@[^@.{s}{nul}]+(\\.[^@.{s}{nul}]+)+[{s}]*$")
        );
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  TestUser@Test.com ").unwrap().as_str(),
            "testuser@test.com"
        );
        for bad in [
            "", "no-at", "a@b", "a@.b", "a b@c.d", "a@b@c.d", "@c.d", "a@b..c",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_must_exist_and_order_by_time() {
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "24-01-01",
            "2024-1-01",
            "2024-01-32",
            "",
            "2024-01-0a",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
        assert!(Date::parse("1999-12-31").unwrap() < Date::parse("2000-01-01").unwrap());
        assert_eq!(Date::from_unix_secs(951_782_400).to_string(), "2000-02-29");
    }

    #[test]
    fn ids_must_be_uuids() {
        assert_eq!(
            parse_uuid("123E4567-e89b-12d3-a456-426614174000").as_deref(),
            Some("123e4567-e89b-12d3-a456-426614174000")
        );
        for bad in [
            "",
            "123",
            "123e4567e89b12d3a456426614174000",
            "123e4567-e89b-12d3-a456-42661417400g",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn blank_required_fields_are_missing() {
        let mut errors = FieldErrors::new();
        assert_eq!(
            required(&mut errors, "a", &Some("  x ".into())),
            Some("  x ")
        );
        assert_eq!(required(&mut errors, "b", &Some("   ".into())), None);
        assert_eq!(required(&mut errors, "c", &None), None);
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["b", "c"]);
    }
}
