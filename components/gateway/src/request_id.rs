//! `x-request-id`: echoed when the client sent a usable one, otherwise minted, so every
//! response and every log line about a request can be tied together.
use http::HeaderMap;

pub const HEADER: &str = "x-request-id";
const MAX_LEN: usize = 128;

/// The client's id if it is short and printable (it ends up in logs and headers), else a new
/// one made by `mint`.
pub fn ensure(headers: &HeaderMap, mint: impl FnOnce() -> String) -> String {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_LEN)
        .filter(|v| v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(mint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, value.parse().unwrap());
        h
    }

    #[test]
    fn echoes_a_client_id() {
        assert_eq!(ensure(&headers("abc-123"), || "new".into()), "abc-123");
    }

    #[test]
    fn mints_when_missing_blank_or_unprintable() {
        assert_eq!(ensure(&HeaderMap::new(), || "new".into()), "new");
        assert_eq!(ensure(&headers("  "), || "new".into()), "new");
        assert_eq!(ensure(&headers("a b"), || "new".into()), "new");
        assert_eq!(ensure(&headers(&"x".repeat(200)), || "new".into()), "new");
    }
}
