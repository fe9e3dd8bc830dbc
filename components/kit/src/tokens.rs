//! The platform's access tokens: HS256 JWTs, subject = the user's email, claim `role`, issuer
//! set, expiry required. Issued by auth, checked by the gateway with the same rules: the
//! algorithm is pinned (a token claiming `none` or any other algorithm is refused), and
//! signature, expiry and issuer are all verified, with no leeway.
//!
//! Keys rotate without downtime (docs/operations.md, "Rotating keys and passwords"): besides the
//! current key (`jwt_secret`, which signs), a component may hold the previous one (tokens issued
//! before the rotation stay valid until they expire) and the next one (tokens issued by an auth
//! instance that already switched), and accepts a token signed by any of them.
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub iss: String,
    pub iat: u64,
    pub exp: u64,
    /// The token's id: what signing out ends. Every token auth issues has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// Where auth keeps the sessions it ended and the gateway checks them (a wasi:keyvalue bucket
/// in Redis, read by the gateway's `token-bucket.admit` in the same round trip as its rate
/// limit): `ended:<jti>` for a token signed out, `ended-before:<subject>` holding the time (Unix
/// seconds) before which every token of that user was ended.
pub const SESSIONS_BUCKET: &str = "sessions";

/// The key of a signed-out token in [`SESSIONS_BUCKET`].
pub fn ended_key(jti: &str) -> String {
    format!("ended:{jti}")
}

/// The key of the time before which `subject`'s tokens were ended, in [`SESSIONS_BUCKET`].
pub fn ended_before_key(subject: &str) -> String {
    format!("ended-before:{subject}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Present but not a usable token; the message says why (never echoing the token).
    Invalid(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Missing => f.write_str("a bearer token is required"),
            TokenError::Invalid(why) => write!(f, "the bearer token is not valid: {why}"),
        }
    }
}

/// Signing with the current key and checking against every accepted key, for one issuer.
pub struct Tokens {
    encoding: EncodingKey,
    /// The current key first: almost every token is checked once.
    decoding: Vec<DecodingKey>,
    validation: Validation,
    issuer: String,
}

/// Shortest secret accepted: HS256 wants at least the hash size.
pub const MIN_SECRET_BYTES: usize = 32;

/// The secret holding the current key.
pub const CURRENT_KEY: &str = "jwt_secret";
/// The secrets that hold the other keys accepted during a rotation, when present.
pub const ROTATION_KEYS: [&str; 2] = ["jwt_secret_previous", "jwt_secret_next"];

fn long_enough(secret: &[u8]) -> Result<&[u8], String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the signing key must be at least {MIN_SECRET_BYTES} bytes"
        ));
    }
    Ok(secret)
}

impl Tokens {
    /// The keys a component was given: `secret(name)` looks one up by its secret's name
    /// ([`CURRENT_KEY`] is required, the [`ROTATION_KEYS`] are optional).
    pub fn from_secrets(
        secret: impl Fn(&str) -> Option<String>,
        issuer: &str,
    ) -> Result<Self, String> {
        let current = secret(CURRENT_KEY).ok_or_else(|| format!("no secret {CURRENT_KEY}"))?;
        let mut tokens = Self::new(current.as_bytes(), issuer)?;
        for name in ROTATION_KEYS {
            if let Some(key) = secret(name).filter(|key| *key != current) {
                let key = long_enough(key.as_bytes()).map_err(|e| format!("{name}: {e}"))?;
                tokens.decoding.push(DecodingKey::from_secret(key));
            }
        }
        Ok(tokens)
    }

    pub fn new(secret: &[u8], issuer: &str) -> Result<Self, String> {
        let secret = long_enough(secret)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: vec![DecodingKey::from_secret(secret)],
            validation,
            issuer: issuer.to_string(),
        })
    }

    pub fn issue(
        &self,
        subject: &str,
        role: &str,
        now: u64,
        lifetime_secs: u64,
    ) -> Result<(String, Claims), String> {
        self.sign(self.claims(subject, role, now, lifetime_secs))
    }

    fn claims(&self, subject: &str, role: &str, now: u64, lifetime_secs: u64) -> Claims {
        Claims {
            sub: subject.to_string(),
            role: role.to_string(),
            iss: self.issuer.clone(),
            iat: now,
            exp: now + lifetime_secs,
            jti: None,
        }
    }

    /// A session's token: `issue` with the token id `jti`, which signing out names.
    pub fn issue_session(
        &self,
        subject: &str,
        role: &str,
        jti: &str,
        now: u64,
        lifetime_secs: u64,
    ) -> Result<(String, Claims), String> {
        self.sign(Claims {
            jti: Some(jti.to_string()),
            ..self.claims(subject, role, now, lifetime_secs)
        })
    }

    fn sign(&self, claims: Claims) -> Result<(String, Claims), String> {
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| e.to_string())?;
        Ok((token, claims))
    }

    /// The token's claims if one accepted key signed it and it is otherwise valid. Only a
    /// signature mismatch moves on to the next key (an HMAC, microseconds): an expired or
    /// malformed token is refused by the first.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut outcome = Err(TokenError::Invalid("no key".into()));
        for key in &self.decoding {
            match decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    let mismatch = matches!(e.kind(), ErrorKind::InvalidSignature);
                    outcome = Err(TokenError::Invalid(e.to_string()));
                    if !mismatch {
                        break;
                    }
                }
            }
        }
        outcome
    }

    /// Checks the value of an `Authorization` header.
    pub fn verify_header(&self, authorization: Option<&str>) -> Result<Claims, TokenError> {
        let value = authorization.ok_or(TokenError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                TokenError::Invalid("the Authorization header is not `Bearer <token>`".into())
            })?;
        self.verify(token.trim())
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    crate::time::now_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn tokens() -> Tokens {
        Tokens::new(SECRET, "patient-management").unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        // Unpadded base64url, enough to forge test tokens.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn issued_tokens_verify_with_their_claims() {
        let t = tokens();
        let (token, claims) = t.issue("a@b.c", "ADMIN", now(), 3600).unwrap();
        assert_eq!(t.verify(&token).unwrap(), claims);
        assert_eq!(
            t.verify_header(Some(&format!("Bearer {token}")))
                .unwrap()
                .role,
            "ADMIN"
        );
    }

    #[test]
    fn expired_tampered_foreign_and_missing_tokens_fail() {
        let t = tokens();
        let (expired, _) = t.issue("a@b.c", "ADMIN", now() - 7200, 3600).unwrap();
        assert!(matches!(t.verify(&expired), Err(TokenError::Invalid(_))));

        let (good, _) = t.issue("a@b.c", "CLINICIAN", now(), 3600).unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_claims = b64(format!(
            r#"{{"sub":"a@b.c","role":"ADMIN","iss":"patient-management","iat":0,"exp":{}}}"#,
            now() + 3600
        )
        .as_bytes());
        parts[1] = &forged_claims;
        assert!(
            t.verify(&parts.join(".")).is_err(),
            "payload swapped under the old signature"
        );

        let other = Tokens::new(
            b"another-secret-of-thirty-two-bytes!!",
            "patient-management",
        )
        .unwrap();
        let (foreign, _) = other.issue("a@b.c", "ADMIN", now(), 3600).unwrap();
        assert!(t.verify(&foreign).is_err(), "signed with another key");

        let wrong_issuer = Tokens::new(SECRET, "someone-else").unwrap();
        let (token, _) = wrong_issuer.issue("a@b.c", "ADMIN", now(), 3600).unwrap();
        assert!(t.verify(&token).is_err(), "wrong issuer");

        assert_eq!(t.verify_header(None), Err(TokenError::Missing));
        assert!(t.verify_header(Some("Basic abc")).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64(format!(
            r#"{{"sub":"a@b.c","role":"ADMIN","iss":"patient-management","iat":0,"exp":{}}}"#,
            now() + 3600
        )
        .as_bytes());
        assert!(tokens().verify(&format!("{header}.{claims}.")).is_err());
    }

    const NEXT: &str = "the-next-key-of-at-least-32-bytes!!";
    const OTHER: &str = "a-key-no-one-accepts-32-bytes-long!";

    /// The keys of a component mid-rotation: `current` signs, the ones in `others` are accepted.
    fn holding(current: &str, others: &[(&str, &str)]) -> Tokens {
        let secrets: std::collections::HashMap<&str, &str> = others
            .iter()
            .copied()
            .chain([(CURRENT_KEY, current)])
            .collect();
        Tokens::from_secrets(
            |name| secrets.get(name).map(|s| s.to_string()),
            "patient-management",
        )
        .unwrap()
    }

    #[test]
    fn a_rotation_accepts_previous_and_next_keys_and_signs_with_the_current() {
        let old = std::str::from_utf8(SECRET).unwrap();
        let before = holding(old, &[]);
        let during = holding(old, &[("jwt_secret_next", NEXT)]);
        let after = holding(NEXT, &[("jwt_secret_previous", old)]);
        let done = holding(NEXT, &[]);
        let (old_token, _) = before.issue("a@b.c", "ADMIN", now(), 3600).unwrap();
        let (new_token, _) = after.issue("a@b.c", "ADMIN", now(), 3600).unwrap();
        for (tokens, old_ok, new_ok, when) in [
            (&before, true, false, "before"),
            (&during, true, true, "during"),
            (&after, true, true, "after"),
            (&done, false, true, "once the previous key is dropped"),
        ] {
            assert_eq!(
                tokens.verify(&old_token).is_ok(),
                old_ok,
                "old token {when}"
            );
            assert_eq!(
                tokens.verify(&new_token).is_ok(),
                new_ok,
                "new token {when}"
            );
        }
        let (foreign, _) = holding(OTHER, &[])
            .issue("a@b.c", "ADMIN", now(), 3600)
            .unwrap();
        assert!(during.verify(&foreign).is_err(), "a key no one holds");
        // An expired token is refused whichever key signed it.
        let (expired, _) = after.issue("a@b.c", "ADMIN", now() - 7200, 3600).unwrap();
        let error = during.verify(&expired).unwrap_err().to_string();
        assert!(error.contains("xpired"), "{error}");
    }

    #[test]
    fn rotation_keys_must_be_long_enough() {
        let secrets = |name: &str| match name {
            CURRENT_KEY => Some(NEXT.to_string()),
            "jwt_secret_previous" => Some("short".to_string()),
            _ => None,
        };
        let error = Tokens::from_secrets(secrets, "x").err().unwrap();
        assert!(error.contains("jwt_secret_previous"), "{error}");
        assert!(Tokens::from_secrets(|_| None, "x").is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Tokens::new(b"short", "x").is_err());
    }
}
