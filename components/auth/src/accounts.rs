//! Staff accounts (issue 20): an ADMIN lists, creates, disables and enables users and sets a
//! user's password; any user changes their own (the current one required). Disabling a user
//! or giving them a new password ends their sessions first (so a failure leaves them ended,
//! never a changed account with live sessions), then changes the account with its audit record.
use http::{Request, Response, StatusCode};
use kit::audit::{self, Context};
use kit::request::json_body;
use kit::tokens::now;
use kit::{response, time, Problem};
use serde::Serialize;

use crate::credentials::{
    new_password, NewUser, NewUserBody, PasswordBody, PasswordChangeBody, Role,
};
use crate::routes::{
    hash, lifetime, tokens, unauthorized, unavailable, Caller, Store, TokenBody, UserRecord,
};

/// A user as an admin sees it (never the password's hash).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    id: String,
    email: String,
    role: String,
    /// A disabled user cannot sign in; their sessions were ended when they were disabled.
    enabled: bool,
    /// Until when failed sign-ins lock the user's email (RFC 3339), if they do now.
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_until: Option<String>,
}

impl User {
    fn of(user: UserRecord, locked_until: Option<u64>) -> Self {
        User {
            id: user.id,
            email: user.email,
            role: user.role,
            enabled: user.enabled,
            locked_until: locked_until.map(time::rfc3339),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Users {
    users: Vec<User>,
}

/// The caller, who must be an ADMIN.
fn admin(caller: Option<&Caller>) -> Result<&Caller, Problem> {
    let caller = caller.ok_or_else(|| unauthorized("a bearer token is required"))?;
    if caller.role != Role::Admin.as_str() {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "only ADMIN users manage users",
        ));
    }
    Ok(caller)
}

fn no_user(id: &str) -> Problem {
    Problem::not_found(format!("no user with id {id}"))
}

/// The user `raw` names (a UUID), or 404.
fn user(store: &dyn Store, raw: &str) -> Result<UserRecord, Problem> {
    let id = kit::fields::parse_uuid(raw).ok_or_else(|| no_user(raw))?;
    store
        .find_by_id(&id)
        .map_err(unavailable)?
        .ok_or_else(|| no_user(&id))
}

/// Ends every session `user` has now; returns the time from which their tokens are good again.
fn end_sessions(store: &dyn Store, user: &UserRecord) -> Result<u64, Problem> {
    // Tokens carry whole seconds: everything issued up to this second is ended, and a token
    // issued from the next one on is good.
    let from = now() + 1;
    store.end_sessions(&user.email, from).map_err(|e| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the user's sessions could not be ended, so nothing was changed; retry: {e}"),
        )
    })?;
    Ok(from)
}

#[utoipa::path(
    get,
    path = "/auth/users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every user, by email", body = Users),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not ADMIN", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "User store unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
pub fn list(store: &dyn Store, caller: Option<&Caller>) -> Result<Response<Vec<u8>>, Problem> {
    admin(caller)?;
    let users = store
        .list()
        .map_err(unavailable)?
        .into_iter()
        .map(|(user, locked)| User::of(user, locked))
        .collect();
    Ok(response::json(StatusCode::OK, &Users { users }))
}

#[utoipa::path(
    post,
    path = "/auth/users",
    request_body = NewUserBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "User created", body = User),
        (status = 400, description = "Invalid fields (a password too short or too easy to guess says why)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not ADMIN", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email already used", body = Problem, content_type = "application/problem+json")
    )
)]
pub fn create(
    store: &dyn Store,
    request: &Request<Vec<u8>>,
    caller: Option<&Caller>,
) -> Result<Response<Vec<u8>>, Problem> {
    admin(caller)?;
    let body: NewUserBody = json_body(request)?;
    let new = NewUser::parse(&body).map_err(Problem::validation)?;
    let user = UserRecord {
        id: store.new_id(),
        email: new.email.as_str().to_string(),
        password_hash: hash(store, &new.password)?,
        role: new.role.as_str().to_string(),
        enabled: true,
    };
    let record = Context::of(request).map(|c| c.entry(201, Some(&user.id), None));
    if !store.insert(&user, record.as_ref()).map_err(unavailable)? {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("a user with email {} exists", user.email),
        ));
    }
    Ok(audit::recorded(
        response::json(StatusCode::CREATED, &User::of(user, None)),
        record.as_ref(),
    ))
}

#[utoipa::path(
    post,
    path = "/auth/users/{id}/disable",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User id (UUID)", format = Uuid)),
    responses(
        (status = 200, description = "Disabled: the user cannot sign in, and every token they had is refused from now on", body = User),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not ADMIN", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An admin cannot disable their own account", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "User or session store unavailable; nothing changed", body = Problem, content_type = "application/problem+json")
    )
)]
pub fn disable(
    store: &dyn Store,
    request: &Request<Vec<u8>>,
    caller: Option<&Caller>,
    id: &str,
) -> Result<Response<Vec<u8>>, Problem> {
    let caller = admin(caller)?;
    let mut user = user(store, id)?;
    if user.email == caller.subject {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "you cannot disable your own account: ask another ADMIN",
        ));
    }
    end_sessions(store, &user)?;
    set_enabled(store, request, &mut user, false)
}

#[utoipa::path(
    post,
    path = "/auth/users/{id}/enable",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User id (UUID)", format = Uuid)),
    responses(
        (status = 200, description = "Enabled, and no longer locked by failed sign-ins", body = User),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not ADMIN", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "User store unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
pub fn enable(
    store: &dyn Store,
    request: &Request<Vec<u8>>,
    caller: Option<&Caller>,
    id: &str,
) -> Result<Response<Vec<u8>>, Problem> {
    admin(caller)?;
    let mut user = user(store, id)?;
    set_enabled(store, request, &mut user, true)
}

fn set_enabled(
    store: &dyn Store,
    request: &Request<Vec<u8>>,
    user: &mut UserRecord,
    enabled: bool,
) -> Result<Response<Vec<u8>>, Problem> {
    let record = Context::of(request).map(|c| c.entry(200, Some(&user.id), None));
    if !store
        .set_enabled(&user.id, enabled, record.as_ref())
        .map_err(unavailable)?
    {
        return Err(no_user(&user.id));
    }
    user.enabled = enabled;
    Ok(audit::recorded(
        response::json(StatusCode::OK, &User::of(user.clone(), None)),
        record.as_ref(),
    ))
}

#[utoipa::path(
    post,
    path = "/auth/users/{id}/password",
    request_body = PasswordBody,
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User id (UUID)", format = Uuid)),
    responses(
        (status = 204, description = "The user's password is the new one, and every session they had is ended"),
        (status = 400, description = "The password is too short, too long or too easy to guess (the reason is given)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not ADMIN", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "User or session store unavailable; nothing changed", body = Problem, content_type = "application/problem+json")
    )
)]
pub fn reset_password(
    store: &dyn Store,
    request: &Request<Vec<u8>>,
    caller: Option<&Caller>,
    id: &str,
) -> Result<Response<Vec<u8>>, Problem> {
    admin(caller)?;
    let user = user(store, id)?;
    let body: PasswordBody = json_body(request)?;
    let mut errors = Default::default();
    let password = new_password(&mut errors, "password", &body.password, Some(&user.email))
        .ok_or_else(|| Problem::validation(errors))?;
    let hashed = hash(store, &password)?;
    end_sessions(store, &user)?;
    let record = Context::of(request).map(|c| c.entry(204, Some(&user.id), None));
    if !store
        .set_password(&user.id, &hashed, record.as_ref())
        .map_err(unavailable)?
    {
        return Err(no_user(&user.id));
    }
    Ok(audit::recorded(response::no_content(), record.as_ref()))
}

#[utoipa::path(
    put,
    path = "/auth/password",
    request_body = PasswordChangeBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed: every other session of the user is ended, and this is a new token for the caller", body = TokenBody),
        (status = 400, description = "The current password is wrong, or the new one is too short, too long, too easy to guess or the same (each field says why)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "User or session store unavailable; nothing changed", body = Problem, content_type = "application/problem+json")
    )
)]
pub fn change_own_password(
    store: &dyn Store,
    request: &Request<Vec<u8>>,
    caller: Option<&Caller>,
) -> Result<Response<Vec<u8>>, Problem> {
    let caller = caller.ok_or_else(|| unauthorized("a bearer token is required"))?;
    let body: PasswordChangeBody = json_body(request)?;
    let email = crate::credentials::Email::parse(&caller.subject)
        .map_err(|_| unauthorized("the token names no user"))?;
    let user = store
        .find(&email)
        .map_err(unavailable)?
        .filter(|u| u.enabled)
        .ok_or_else(|| unauthorized("the token names no user"))?;
    let mut errors = std::collections::BTreeMap::new();
    let current = kit::fields::required(&mut errors, "currentPassword", &body.current_password)
        .map(str::to_string);
    let new = new_password(
        &mut errors,
        "newPassword",
        &body.new_password,
        Some(&user.email),
    );
    if let Some(current) = &current {
        if !bcrypt::verify(current, &user.password_hash).unwrap_or(false) {
            errors.insert(
                "currentPassword".into(),
                "is not your current password".into(),
            );
        } else if new.as_deref() == Some(current.as_str()) {
            errors.insert(
                "newPassword".into(),
                "must differ from the current one".into(),
            );
        }
    }
    let (Some(new), true) = (new, errors.is_empty()) else {
        return Err(Problem::validation(errors));
    };
    let hashed = hash(store, &new)?;
    let from = end_sessions(store, &user)?;
    let record = Context::of(request).map(|c| c.entry(200, Some(&user.id), None));
    if !store
        .set_password(&user.id, &hashed, record.as_ref())
        .map_err(unavailable)?
    {
        return Err(unauthorized("the token names no user"));
    }
    // Issued at the first second the ended sessions do not cover, so this one lives on.
    let (token, claims) = tokens(store)?
        .issue_session(
            &user.email,
            &user.role,
            &store.new_id(),
            from,
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
    Ok(audit::recorded(answer, record.as_ref()))
}
