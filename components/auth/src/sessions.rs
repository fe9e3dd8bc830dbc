//! Signing in and out: `POST /login` (with the lockout), `POST /logout`, `GET /validate`.
//!
//! Lockout: failed sign-ins are counted per email as typed, known or not. From the
//! [`LOCK_AFTER`]th failure on, each failure locks the address for twice as long as the one
//! before ([`FIRST_LOCK_SECS`], up to [`LONGEST_LOCK_SECS`]): guessing first slows down, then
//! stops for long stretches. While locked, every attempt gets the same 429, without checking the
//! password, whether a user has the email or not; otherwise an unknown email costs the same
//! bcrypt work as a wrong password. The lock and its end are audit records of their own.
use http::{header, HeaderValue, Request, Response, StatusCode};
use kit::audit::{self, Context, Entry};
use kit::request::json_body;
use kit::tokens::now;
use kit::{response, time, Problem};

use crate::credentials::{Email, Login, LoginBody, Role};
use crate::routes::{
    hash, lifetime, tokens, unauthorized, unavailable, Attempt, Store, TokenBody, TokenInfo,
    UserRecord,
};

pub const INVALID_LOGIN: &str = "invalid email or password";
/// Failures before the first lock.
pub const LOCK_AFTER: u32 = 3;
pub const FIRST_LOCK_SECS: u64 = 1;
pub const LONGEST_LOCK_SECS: u64 = 900;

/// How long the `failures`th failure in a row locks its email, if at all.
pub fn lock_secs(failures: u32) -> Option<u64> {
    let past = failures.checked_sub(LOCK_AFTER)?;
    Some(
        FIRST_LOCK_SECS
            .saturating_mul(1u64 << past.min(32))
            .min(LONGEST_LOCK_SECS),
    )
}

#[utoipa::path(
    post,
    path = "/auth/login",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in", body = TokenBody),
        (status = 400, description = "Missing or malformed fields", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong email or password, or a disabled account (one message for all)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed sign-ins for this email: locked for `Retry-After` seconds, whether or not an account has it", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the email may sign in again"))),
        (status = 503, description = "User store unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
pub fn login(store: &dyn Store, request: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Problem> {
    let body: LoginBody = json_body(request)?;
    let login = Login::parse(&body).map_err(Problem::validation)?;
    let tokens = tokens(store)?;
    if let Some(wait) = store.locked_for(&login.email).map_err(unavailable)? {
        let mut locked = response::problem(&Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed sign-ins for this email; retry after {wait} s"),
        ));
        locked
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Ok(attempted(locked, &login.email, None));
    }
    let mut user = store.find(&login.email).map_err(unavailable)?;
    // Only the seed admin's email looks twice (once made), so an unknown email costs the same
    // queries as a known one.
    if user.is_none() && ensure_seed_user(store, &login.email)? {
        user = store.find(&login.email).map_err(unavailable)?;
    }
    let verified = match &user {
        Some(u) => bcrypt::verify(&login.password, &u.password_hash).unwrap_or(false),
        None => {
            // Same work as a real check, so an unknown email is not faster to answer.
            let _ = hash(store, &login.password);
            false
        }
    };
    let context = Context::of(request);
    let Some(user) = user.filter(|u| verified && u.enabled) else {
        let attempt = events(store, context.as_ref(), &login.email, 401);
        store.failed(&login.email, &attempt).map_err(unavailable)?;
        let refused = response::problem(&unauthorized(INVALID_LOGIN));
        return Ok(attempted(refused, &login.email, None));
    };
    let attempt = events(store, context.as_ref(), &login.email, 200);
    store
        .succeeded(&login.email, &attempt)
        .map_err(unavailable)?;
    // Sessions ended within this second (a user just enabled again) end with "up to the next
    // second": a token issued now must count from then, or it would be born ended. A session
    // store that is down ends nothing the gateway could check, so now is right then.
    let issued = match store.sessions_from(&user.email) {
        Ok(Some(from)) => from.max(now()),
        _ => now(),
    };
    let (token, claims) = tokens
        .issue_session(
            &user.email,
            &user.role,
            &store.new_id(),
            issued,
            lifetime(store),
        )
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let answer = response::json(
        StatusCode::OK,
        &TokenBody {
            token,
            expires_at: time::rfc3339(claims.exp),
        },
    );
    Ok(attempted(answer, &login.email, Some(&user)))
}

/// The lock and unlock records a sign-in of `email` may write, when the request is audited:
/// events of their own (new ids), under the request's id and with its outcome.
fn events(store: &dyn Store, context: Option<&Context>, email: &Email, outcome: u16) -> Attempt {
    let event = |action: &str| -> Option<Entry> {
        let mut entry = context?.entry(outcome, Some(email.as_str()), None);
        entry.id = store.new_id();
        entry.action = action.to_string();
        entry.resource_type = "user".to_string();
        Some(entry)
    };
    Attempt {
        lock: event("user.lock"),
        unlock: event("user.unlock"),
    }
}

/// A login's answer, telling the gateway's audit record which account was tried and, when the
/// login succeeded, who signed in (the caller had no token to say so).
fn attempted(
    mut answer: Response<Vec<u8>>,
    email: &Email,
    signed_in: Option<&UserRecord>,
) -> Response<Vec<u8>> {
    let headers = answer.headers_mut();
    let pairs = [
        (audit::RESOURCE_ID, Some(email.as_str())),
        (audit::ACTOR, signed_in.map(|u| u.email.as_str())),
        (audit::ACTOR_ROLE, signed_in.map(|u| u.role.as_str())),
    ];
    for (name, value) in pairs {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
    answer
}

/// The configured seed admin, created on its first login (once: the insert ignores a taken
/// email). Whether `email` is the seed admin's.
fn ensure_seed_user(store: &dyn Store, email: &Email) -> Result<bool, Problem> {
    let seed_email = store
        .config("seed_admin_email")
        .and_then(|e| Email::parse(&e).ok());
    let seed_password = store.secret("seed_admin_password");
    if let (Some(seed_email), Some(password)) = (seed_email, seed_password) {
        if &seed_email == email {
            let user = UserRecord {
                id: store.new_id(),
                email: seed_email.as_str().to_string(),
                password_hash: hash(store, &password)?,
                role: Role::Admin.as_str().to_string(),
                enabled: true,
            };
            store.insert(&user, None).map_err(unavailable)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// The verified claims of the request's own token.
fn bearer(store: &dyn Store, request: &Request<Vec<u8>>) -> Result<kit::tokens::Claims, Problem> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    tokens(store)?
        .verify_header(authorization)
        .map_err(|e| unauthorized(&e.to_string()))
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out: the token is refused on every route from now on"),
        (status = 401, description = "Missing, malformed, badly signed, expired or already ended token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The session store is unavailable; the token still works: retry", body = Problem, content_type = "application/problem+json")
    )
)]
pub fn logout(store: &dyn Store, request: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Problem> {
    let claims = bearer(store, request)?;
    let Some(jti) = claims.jti.as_deref() else {
        return Err(unauthorized(
            "this token has no id to sign out: it was not issued by a sign-in",
        ));
    };
    store.end_token(jti).map_err(|e| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the session could not be ended, retry: {e}"),
        )
    })?;
    Ok(response::no_content())
}

#[utoipa::path(
    get,
    path = "/auth/validate",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token is valid", body = TokenInfo),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = Problem, content_type = "application/problem+json")
    )
)]
pub fn validate(
    store: &dyn Store,
    request: &Request<Vec<u8>>,
) -> Result<Response<Vec<u8>>, Problem> {
    let claims = bearer(store, request)?;
    let info = TokenInfo {
        subject: claims.sub,
        role: claims.role,
        expires_at: time::rfc3339(claims.exp),
    };
    Ok(response::json(StatusCode::OK, &info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guessing_slows_down_then_locks_for_longer_and_longer() {
        let locks: Vec<Option<u64>> = (1..=16).map(lock_secs).collect();
        assert_eq!(&locks[..5], [None, None, Some(1), Some(2), Some(4)]);
        assert_eq!(
            (locks[11], locks[12]),
            (Some(512), Some(900)),
            "at most 15 minutes"
        );
        assert_eq!(lock_secs(u32::MAX), Some(LONGEST_LOCK_SECS));
    }
}
