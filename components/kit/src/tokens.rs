//! The platform's access tokens: HS256 JWTs, subject = the user's email, claim `role`, issuer
//! set, expiry required. Issued by auth, checked by the gateway with the same rules: the
//! algorithm is pinned (a token claiming `none` or any other algorithm is refused), and
//! signature, expiry and issuer are all verified, with no leeway.
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub iss: String,
    pub iat: u64,
    pub exp: u64,
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

/// Signing and checking with one shared secret and issuer.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
}

/// Shortest secret accepted: HS256 wants at least the hash size.
pub const MIN_SECRET_BYTES: usize = 32;

impl Tokens {
    pub fn new(secret: &[u8], issuer: &str) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the signing key must be at least {MIN_SECRET_BYTES} bytes"
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
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
        let claims = Claims {
            sub: subject.to_string(),
            role: role.to_string(),
            iss: self.issuer.clone(),
            iat: now,
            exp: now + lifetime_secs,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| e.to_string())?;
        Ok((token, claims))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| TokenError::Invalid(e.to_string()))
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

    #[test]
    fn short_secrets_are_refused() {
        assert!(Tokens::new(b"short", "x").is_err());
    }
}
