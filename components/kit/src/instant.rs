//! An instant in RFC 3339, for components that take times from callers (appointments, the audit
//! trail's filters). A feature of its own: it brings a calendar crate the others do not need.
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// An instant, truncated to the second (what is stored and shown).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(OffsetDateTime);

impl Instant {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let at = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
            "must be a date-time as RFC 3339, e.g. 2030-01-31T09:00:00Z".to_string()
        })?;
        // Stored and shown in UTC, which must stay within years 1–9999: Postgres has no year 0,
        // and RFC 3339 has no year 10000 (`0001-01-01T00:00:00+09:00` is in year 0 in UTC).
        let utc_year = at
            .checked_to_offset(time::UtcOffset::UTC)
            .map(|utc| utc.year());
        if !utc_year.is_some_and(|year| (1..=9999).contains(&year)) {
            return Err("must fall within the years 1 to 9999 in UTC".into());
        }
        Ok(Self(
            at.replace_nanosecond(0).expect("0 is a valid nanosecond"),
        ))
    }

    pub fn from_unix_secs(secs: u64) -> Self {
        Self(OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH))
    }

    /// How long after `earlier` this is.
    pub fn since(self, earlier: Instant) -> Duration {
        self.0 - earlier.0
    }

    /// RFC 3339 in UTC (`2030-01-31T09:00:00Z`).
    pub fn to_rfc3339(self) -> String {
        self.0
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .expect("UTC instants format")
    }
}
