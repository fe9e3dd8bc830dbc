//! Auth's answers: `POST /login`, `GET /validate`, `POST /users` (ADMIN). The same 401 message
//! is given for an unknown email and a wrong password, and both cost one bcrypt verification,
//! so neither the body nor the timing tells which it was.
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use kit::audit::{self, Context, Entry};
use kit::openapi::BearerAuth;
use kit::request::json_body;
use kit::tokens::{now, Tokens};
use kit::{response, time, Problem};
use serde::Serialize;
use utoipa::OpenApi;

use crate::credentials::{Email, Login, LoginBody, NewUser, NewUserBody, Role, RoleName};

pub const INVALID_LOGIN: &str = "invalid email or password";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub role: String,
}

/// Who is calling, as the gateway passed it on.
pub struct Caller {
    pub subject: String,
    pub role: String,
}

/// The component's surroundings; `Err` means the database could not be reached (503).
pub trait Store {
    fn find(&self, email: &Email) -> Result<Option<UserRecord>, String>;
    /// False when the email is taken. `audit`, the request's audit record, is stored with the
    /// user when it is audited.
    fn insert(&self, user: &UserRecord, audit: Option<&Entry>) -> Result<bool, String>;
    fn config(&self, key: &str) -> Option<String>;
    /// A secret the host fetched for auth (wasmcloud:secrets): `jwt_secret`, `seed_admin_password`.
    fn secret(&self, key: &str) -> Option<String>;
    fn new_id(&self) -> String;
}

pub fn handle(
    store: &dyn Store,
    request: &Request<Vec<u8>>,
    caller: Option<&Caller>,
) -> Response<Vec<u8>> {
    let path = request.uri().path();
    let result = match (request.method(), path) {
        (&Method::POST, "/login") => login(store, request),
        (&Method::GET, "/validate") => validate(store, request),
        (&Method::POST, "/users") => create_user(store, request, caller),
        (&Method::GET, "/openapi.json") => Ok(response::json(StatusCode::OK, &Api::openapi())),
        (_, "/login" | "/validate" | "/users") => Err(Problem::method_not_allowed(
            request.method().as_str(),
            &format!("/auth{path}"),
            if path == "/validate" { "GET" } else { "POST" },
        )),
        _ => Err(Problem::not_found(format!(
            "no route for {} /auth{path}",
            request.method()
        ))),
    };
    result.unwrap_or_else(|p| response::problem(&p))
}

fn unavailable(e: String) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("user store unavailable: {e}"),
    )
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, detail)
}

fn tokens(store: &dyn Store) -> Result<Tokens, Problem> {
    let issuer = store
        .config("jwt_issuer")
        .unwrap_or_else(|| "patient-management".into());
    Tokens::from_secrets(|name| store.secret(name), &issuer).map_err(|e| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("auth misconfigured: {e}"),
        )
    })
}

fn cost(store: &dyn Store) -> u32 {
    store
        .config("bcrypt_cost")
        .and_then(|c| c.parse().ok())
        .filter(|c| (4..=16).contains(c))
        .unwrap_or(10)
}

fn hash(store: &dyn Store, password: &str) -> Result<String, Problem> {
    bcrypt::hash(password, cost(store)).map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("password hashing failed: {e}"),
        )
    })
}

/// The configured seed admin, created on its first login (once: the insert ignores a taken email).
fn ensure_seed_user(store: &dyn Store, email: &Email) -> Result<(), Problem> {
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
            };
            store.insert(&user, None).map_err(unavailable)?;
        }
    }
    Ok(())
}

/// Auth's OpenAPI document, generated from the types and operations below.
#[derive(OpenApi)]
#[openapi(
    info(title = "auth", description = "Staff authentication", version = env!("CARGO_PKG_VERSION")),
    paths(login, validate, create_user),
    components(schemas(LoginBody, NewUserBody, RoleName, TokenBody, TokenInfo, CreatedUser, Problem)),
    modifiers(&BearerAuth)
)]
pub struct Api;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct TokenBody {
    token: String,
    /// RFC 3339.
    expires_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct TokenInfo {
    subject: String,
    role: String,
    expires_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct CreatedUser {
    id: String,
    email: String,
    role: String,
}

#[utoipa::path(
    post,
    path = "/auth/login",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in", body = TokenBody),
        (status = 400, description = "Missing or malformed fields", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong email or password (one message for both)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "User store unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
fn login(store: &dyn Store, request: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Problem> {
    let body: LoginBody = json_body(request)?;
    let login = Login::parse(&body).map_err(Problem::validation)?;
    let tokens = tokens(store)?;
    let mut user = store.find(&login.email).map_err(unavailable)?;
    if user.is_none() {
        ensure_seed_user(store, &login.email)?;
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
    let Some(user) = user.filter(|_| verified) else {
        let refused = response::problem(&unauthorized(INVALID_LOGIN));
        return Ok(attempted(refused, &login.email, None));
    };
    let lifetime = store
        .config("token_lifetime_secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600);
    let (token, claims) = tokens
        .issue(&user.email, &user.role, now(), lifetime)
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

#[utoipa::path(
    get,
    path = "/auth/validate",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token is valid", body = TokenInfo),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = Problem, content_type = "application/problem+json")
    )
)]
fn validate(store: &dyn Store, request: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Problem> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let claims = tokens(store)?
        .verify_header(authorization)
        .map_err(|e| unauthorized(&e.to_string()))?;
    let info = TokenInfo {
        subject: claims.sub,
        role: claims.role,
        expires_at: time::rfc3339(claims.exp),
    };
    Ok(response::json(StatusCode::OK, &info))
}

#[utoipa::path(
    post,
    path = "/auth/users",
    request_body = NewUserBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "User created", body = CreatedUser),
        (status = 400, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not ADMIN", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email already used", body = Problem, content_type = "application/problem+json")
    )
)]
fn create_user(
    store: &dyn Store,
    request: &Request<Vec<u8>>,
    caller: Option<&Caller>,
) -> Result<Response<Vec<u8>>, Problem> {
    let caller = caller.ok_or_else(|| unauthorized("a bearer token is required"))?;
    if caller.role != Role::Admin.as_str() {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "only ADMIN users can create users",
        ));
    }
    let body: NewUserBody = json_body(request)?;
    let new = NewUser::parse(&body).map_err(Problem::validation)?;
    let user = UserRecord {
        id: store.new_id(),
        email: new.email.as_str().to_string(),
        password_hash: hash(store, &new.password)?,
        role: new.role.as_str().to_string(),
    };
    let record = Context::of(request).map(|c| c.entry(201, Some(&user.id), None));
    if !store.insert(&user, record.as_ref()).map_err(unavailable)? {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("a user with email {} exists", user.email),
        ));
    }
    let created = CreatedUser {
        id: user.id,
        email: user.email,
        role: user.role,
    };
    Ok(audit::recorded(
        response::json(StatusCode::CREATED, &created),
        record.as_ref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::RefCell;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[derive(Default)]
    struct Memory {
        users: RefCell<Vec<UserRecord>>,
        down: bool,
    }

    impl Store for Memory {
        fn find(&self, email: &Email) -> Result<Option<UserRecord>, String> {
            if self.down {
                return Err("connection refused".into());
            }
            Ok(self
                .users
                .borrow()
                .iter()
                .find(|u| u.email == email.as_str())
                .cloned())
        }
        fn insert(&self, user: &UserRecord, _: Option<&Entry>) -> Result<bool, String> {
            if self.users.borrow().iter().any(|u| u.email == user.email) {
                return Ok(false);
            }
            self.users.borrow_mut().push(user.clone());
            Ok(true)
        }
        fn config(&self, key: &str) -> Option<String> {
            match key {
                "bcrypt_cost" => Some("4".into()),
                "seed_admin_email" => Some("testuser@test.com".into()),
                _ => None,
            }
        }
        fn secret(&self, key: &str) -> Option<String> {
            match key {
                "jwt_secret" => Some(SECRET.into()),
                "seed_admin_password" => Some("password123".into()),
                _ => None,
            }
        }
        fn new_id(&self) -> String {
            format!("id-{}", self.users.borrow().len())
        }
    }

    fn post(path: &str, body: serde_json::Value) -> Request<Vec<u8>> {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .unwrap()
    }

    fn body(r: &Response<Vec<u8>>) -> serde_json::Value {
        serde_json::from_slice(r.body()).unwrap()
    }

    #[test]
    fn seed_admin_logs_in_once_created_and_gets_a_valid_token() {
        let store = Memory::default();
        let ok = handle(
            &store,
            &post(
                "/login",
                json!({"email": "TestUser@test.com", "password": "password123"}),
            ),
            None,
        );
        assert_eq!(
            ok.status(),
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(ok.body())
        );
        let token = body(&ok)["token"].as_str().unwrap().to_string();
        assert_eq!(store.users.borrow().len(), 1);
        assert!(
            store.users.borrow()[0].password_hash.starts_with("$2"),
            "stored as bcrypt"
        );
        // A second login does not create the seed user again.
        handle(
            &store,
            &post(
                "/login",
                json!({"email": "testuser@test.com", "password": "password123"}),
            ),
            None,
        );
        assert_eq!(store.users.borrow().len(), 1);

        let validate = Request::builder()
            .uri("/validate")
            .header("authorization", format!("Bearer {token}"))
            .body(vec![])
            .unwrap();
        let answer = handle(&store, &validate, None);
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(body(&answer)["subject"], "testuser@test.com");
        assert_eq!(body(&answer)["role"], "ADMIN");
    }

    #[test]
    fn unknown_user_and_wrong_password_get_the_same_401() {
        let store = Memory::default();
        let wrong = handle(
            &store,
            &post(
                "/login",
                json!({"email": "testuser@test.com", "password": "nope-nope"}),
            ),
            None,
        );
        let unknown = handle(
            &store,
            &post(
                "/login",
                json!({"email": "ghost@test.com", "password": "password123"}),
            ),
            None,
        );
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(body(&wrong)["detail"], body(&unknown)["detail"]);
    }

    #[test]
    fn bad_bodies_are_4xx_and_a_down_store_is_503() {
        let store = Memory::default();
        let not_json = Request::builder()
            .method(Method::POST)
            .uri("/login")
            .header("content-type", "text/plain")
            .body(b"x".to_vec())
            .unwrap();
        assert_eq!(
            handle(&store, &not_json, None).status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let missing = handle(&store, &post("/login", json!({})), None);
        assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
        assert!(body(&missing)["errors"]["email"].is_string());
        let down = Memory {
            down: true,
            ..Memory::default()
        };
        assert_eq!(
            handle(
                &down,
                &post("/login", json!({"email": "a@b.co", "password": "x"})),
                None
            )
            .status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn the_openapi_document_names_every_route() {
        let doc = handle(
            &Memory::default(),
            &Request::builder()
                .uri("/openapi.json")
                .body(vec![])
                .unwrap(),
            None,
        );
        assert_eq!(doc.status(), StatusCode::OK);
        let doc = body(&doc);
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.")),
            Some(true)
        );
        for path in ["/auth/login", "/auth/validate", "/auth/users"] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[test]
    fn only_admins_create_users_and_emails_are_unique() {
        let store = Memory::default();
        let new =
            json!({"email": "nurse@clinic.test", "password": "correct horse", "role": "CLINICIAN"});
        assert_eq!(
            handle(&store, &post("/users", new.clone()), None).status(),
            StatusCode::UNAUTHORIZED
        );
        let clinician = Caller {
            subject: "c@x.io".into(),
            role: "CLINICIAN".into(),
        };
        assert_eq!(
            handle(&store, &post("/users", new.clone()), Some(&clinician)).status(),
            StatusCode::FORBIDDEN
        );
        let admin = Caller {
            subject: "a@x.io".into(),
            role: "ADMIN".into(),
        };
        let created = handle(&store, &post("/users", new.clone()), Some(&admin));
        assert_eq!(created.status(), StatusCode::CREATED);
        assert!(
            body(&created).get("password").is_none()
                && body(&created).get("passwordHash").is_none()
        );
        assert_eq!(
            handle(&store, &post("/users", new), Some(&admin)).status(),
            StatusCode::CONFLICT
        );
    }
}
