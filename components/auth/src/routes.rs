//! Auth's answers: which handler a request goes to, what they share (the `Store`, password
//! hashing, the signing keys) and the OpenAPI document. Signing in and out is `sessions`, staff
//! accounts `accounts`.
use http::{Method, Request, Response, StatusCode};
use kit::audit::Entry;
use kit::openapi::BearerAuth;
use kit::tokens::Tokens;
use kit::{response, Problem};
use serde::Serialize;
use utoipa::OpenApi;

use crate::accounts::{self, User, Users};
use crate::credentials::{
    Email, LoginBody, NewUserBody, PasswordBody, PasswordChangeBody, RoleName,
};
use crate::sessions;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub enabled: bool,
}

/// Who is calling, as the gateway passed it on.
pub struct Caller {
    pub subject: String,
    pub role: String,
}

/// The audit records a sign-in may add besides its own: the email locked by this failure, or
/// a lock that had run out lifted. `None` when the request is not audited.
pub struct Attempt {
    pub lock: Option<Entry>,
    pub unlock: Option<Entry>,
}

/// The component's surroundings; `Err` means the store could not be reached (503).
pub trait Store {
    fn find(&self, email: &Email) -> Result<Option<UserRecord>, String>;
    fn find_by_id(&self, id: &str) -> Result<Option<UserRecord>, String>;
    /// Every user by email, with when their email's lock ends, if it is locked now.
    fn list(&self) -> Result<Vec<(UserRecord, Option<u64>)>, String>;
    /// False when the email is taken. `audit`, the request's audit record, is stored with the
    /// change when the request is audited (so for the methods below).
    fn insert(&self, user: &UserRecord, audit: Option<&Entry>) -> Result<bool, String>;
    /// False when there is no such user. Enabling also lifts a lock.
    fn set_enabled(&self, id: &str, enabled: bool, audit: Option<&Entry>) -> Result<bool, String>;
    /// False when there is no such user.
    fn set_password(&self, id: &str, hash: &str, audit: Option<&Entry>) -> Result<bool, String>;
    /// Seconds until `email` may try to sign in again, if it is locked.
    fn locked_for(&self, email: &Email) -> Result<Option<u64>, String>;
    /// Counts a failed sign-in of `email` and locks it as `sessions::lock_secs` says.
    fn failed(&self, email: &Email, attempt: &Attempt) -> Result<(), String>;
    /// Forgets `email`'s failures after a sign-in.
    fn succeeded(&self, email: &Email, attempt: &Attempt) -> Result<(), String>;
    /// Ends one session: the token `jti` is refused from now until it would have expired.
    fn end_token(&self, jti: &str) -> Result<(), String>;
    /// Ends every session of `subject` issued before `from` (Unix seconds).
    fn end_sessions(&self, subject: &str, from: u64) -> Result<(), String>;
    /// The time from which `subject`'s tokens are good, if their sessions were ended.
    fn sessions_from(&self, subject: &str) -> Result<Option<u64>, String>;
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
    let method = request.method();
    let user_action = path
        .strip_prefix("/users/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(id, action)| !id.is_empty() && !action.contains('/'));
    let result = match (method, path, user_action) {
        (&Method::POST, "/login", _) => sessions::login(store, request),
        (&Method::POST, "/logout", _) => sessions::logout(store, request),
        (&Method::GET, "/validate", _) => sessions::validate(store, request),
        (&Method::GET, "/users", _) => accounts::list(store, caller),
        (&Method::POST, "/users", _) => accounts::create(store, request, caller),
        (&Method::PUT, "/password", _) => accounts::change_own_password(store, request, caller),
        (&Method::POST, _, Some((id, "disable"))) => accounts::disable(store, request, caller, id),
        (&Method::POST, _, Some((id, "enable"))) => accounts::enable(store, request, caller, id),
        (&Method::POST, _, Some((id, "password"))) => {
            accounts::reset_password(store, request, caller, id)
        }
        (&Method::GET, "/openapi.json", _) => Ok(response::json(StatusCode::OK, &Api::openapi())),
        (_, "/login" | "/logout" | "/validate" | "/users" | "/password", _) => {
            let allow = match path {
                "/validate" => "GET",
                "/users" => "GET, POST",
                "/password" => "PUT",
                _ => "POST",
            };
            Err(Problem::method_not_allowed(
                method.as_str(),
                &format!("/auth{path}"),
                allow,
            ))
        }
        (_, _, Some((_, "disable" | "enable" | "password"))) => Err(Problem::method_not_allowed(
            method.as_str(),
            &format!("/auth{path}"),
            "POST",
        )),
        _ => Err(Problem::not_found(format!(
            "no route for {method} /auth{path}"
        ))),
    };
    result.unwrap_or_else(|p| response::problem(&p))
}

pub fn unavailable(e: String) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("user store unavailable: {e}"),
    )
}

pub fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, detail)
}

pub fn tokens(store: &dyn Store) -> Result<Tokens, Problem> {
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

/// How long a token lives (config `token_lifetime_secs`, default an hour).
pub fn lifetime(store: &dyn Store) -> u64 {
    store
        .config("token_lifetime_secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600)
}

fn cost(store: &dyn Store) -> u32 {
    store
        .config("bcrypt_cost")
        .and_then(|c| c.parse().ok())
        .filter(|c| (4..=16).contains(c))
        .unwrap_or(10)
}

pub fn hash(store: &dyn Store, password: &str) -> Result<String, Problem> {
    bcrypt::hash(password, cost(store)).map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("password hashing failed: {e}"),
        )
    })
}

/// Auth's OpenAPI document, generated from the types and operations of `sessions` and
/// `accounts`.
#[derive(OpenApi)]
#[openapi(
    info(title = "auth", description = "Staff authentication and accounts", version = env!("CARGO_PKG_VERSION")),
    paths(
        sessions::login, sessions::logout, sessions::validate,
        accounts::list, accounts::create, accounts::disable, accounts::enable,
        accounts::reset_password, accounts::change_own_password
    ),
    components(schemas(LoginBody, NewUserBody, PasswordBody, PasswordChangeBody, RoleName,
        TokenBody, TokenInfo, User, Users, Problem)),
    modifiers(&BearerAuth)
)]
pub struct Api;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenBody {
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub subject: String,
    pub role: String,
    pub expires_at: String,
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
        /// Failed sign-ins per email, and whether the email is locked.
        failures: RefCell<std::collections::HashMap<String, u32>>,
        ended_tokens: RefCell<Vec<String>>,
        ended_before: RefCell<Vec<(String, u64)>>,
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
        fn find_by_id(&self, id: &str) -> Result<Option<UserRecord>, String> {
            Ok(self.users.borrow().iter().find(|u| u.id == id).cloned())
        }
        fn list(&self) -> Result<Vec<(UserRecord, Option<u64>)>, String> {
            Ok(self
                .users
                .borrow()
                .iter()
                .map(|u| (u.clone(), None))
                .collect())
        }
        fn insert(&self, user: &UserRecord, _: Option<&Entry>) -> Result<bool, String> {
            if self.users.borrow().iter().any(|u| u.email == user.email) {
                return Ok(false);
            }
            self.users.borrow_mut().push(user.clone());
            Ok(true)
        }
        fn set_enabled(&self, id: &str, enabled: bool, _: Option<&Entry>) -> Result<bool, String> {
            let mut users = self.users.borrow_mut();
            let Some(user) = users.iter_mut().find(|u| u.id == id) else {
                return Ok(false);
            };
            user.enabled = enabled;
            if enabled {
                self.failures.borrow_mut().remove(&user.email);
            }
            Ok(true)
        }
        fn set_password(&self, id: &str, hash: &str, _: Option<&Entry>) -> Result<bool, String> {
            let mut users = self.users.borrow_mut();
            let Some(user) = users.iter_mut().find(|u| u.id == id) else {
                return Ok(false);
            };
            user.password_hash = hash.to_string();
            Ok(true)
        }
        fn locked_for(&self, email: &Email) -> Result<Option<u64>, String> {
            let failures = self.failures.borrow().get(email.as_str()).copied();
            Ok(failures.and_then(crate::sessions::lock_secs))
        }
        fn failed(&self, email: &Email, _: &Attempt) -> Result<(), String> {
            *self
                .failures
                .borrow_mut()
                .entry(email.as_str().to_string())
                .or_default() += 1;
            Ok(())
        }
        fn succeeded(&self, email: &Email, _: &Attempt) -> Result<(), String> {
            self.failures.borrow_mut().remove(email.as_str());
            Ok(())
        }
        fn end_token(&self, jti: &str) -> Result<(), String> {
            self.ended_tokens.borrow_mut().push(jti.to_string());
            Ok(())
        }
        fn end_sessions(&self, subject: &str, from: u64) -> Result<(), String> {
            self.ended_before
                .borrow_mut()
                .push((subject.to_string(), from));
            Ok(())
        }
        fn sessions_from(&self, subject: &str) -> Result<Option<u64>, String> {
            let ended = self.ended_before.borrow();
            Ok(ended
                .iter()
                .rev()
                .find(|(s, _)| s == subject)
                .map(|(_, from)| *from))
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
            format!("00000000-0000-4000-8000-{:012}", self.users.borrow().len())
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
        for path in [
            "/auth/login",
            "/auth/logout",
            "/auth/validate",
            "/auth/users",
            "/auth/users/{id}/disable",
            "/auth/users/{id}/enable",
            "/auth/users/{id}/password",
            "/auth/password",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[test]
    fn only_admins_create_users_and_emails_are_unique() {
        let store = Memory::default();
        let new = json!({"email": "nurse@clinic.test", "password": "correct horse battery", "role": "CLINICIAN"});
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

    fn as_caller(
        method: Method,
        path: &str,
        body: serde_json::Value,
        caller: &Caller,
        store: &Memory,
    ) -> Response<Vec<u8>> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .unwrap();
        handle(store, &request, Some(caller))
    }

    #[test]
    fn failed_sign_ins_lock_known_and_unknown_emails_alike() {
        let store = Memory::default();
        let try_login = |email: &str| {
            handle(
                &store,
                &post("/login", json!({"email": email, "password": "nope-nope"})),
                None,
            )
        };
        for email in ["testuser@test.com", "ghost@test.com"] {
            for _ in 0..crate::sessions::LOCK_AFTER {
                assert_eq!(try_login(email).status(), StatusCode::UNAUTHORIZED);
            }
            let locked = try_login(email);
            assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS, "{email}");
            assert_eq!(locked.headers()[http::header::RETRY_AFTER], "1");
        }
        // Even the right password waits out the lock.
        let right = handle(
            &store,
            &post(
                "/login",
                json!({"email": "testuser@test.com", "password": "password123"}),
            ),
            None,
        );
        assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn admins_disable_enable_and_reset_and_each_ends_the_sessions_it_should() {
        let store = Memory::default();
        let admin = Caller {
            subject: "testuser@test.com".into(),
            role: "ADMIN".into(),
        };
        let created = as_caller(
            Method::POST,
            "/users",
            json!({"email": "nurse@clinic.test", "password": "correct horse battery", "role": "CLINICIAN"}),
            &admin,
            &store,
        );
        let id = body(&created)["id"].as_str().unwrap().to_string();
        let disabled = as_caller(
            Method::POST,
            &format!("/users/{id}/disable"),
            json!({}),
            &admin,
            &store,
        );
        assert_eq!(body(&disabled)["enabled"], false);
        assert_eq!(store.ended_before.borrow()[0].0, "nurse@clinic.test");
        let login = json!({"email": "nurse@clinic.test", "password": "correct horse battery"});
        assert_eq!(
            handle(&store, &post("/login", login.clone()), None).status(),
            StatusCode::UNAUTHORIZED,
            "a disabled user cannot sign in"
        );
        as_caller(
            Method::POST,
            &format!("/users/{id}/enable"),
            json!({}),
            &admin,
            &store,
        );
        let again = handle(&store, &post("/login", login), None);
        assert_eq!(again.status(), StatusCode::OK);
        let token = body(&again)["token"].as_str().unwrap().to_string();
        let issued = tokens(&store).unwrap().verify(&token).unwrap().iat;
        assert!(
            issued >= store.ended_before.borrow()[0].1,
            "a sign-in right after the sessions ended is not born ended"
        );
        let weak = as_caller(
            Method::POST,
            &format!("/users/{id}/password"),
            json!({"password": "password123456"}),
            &admin,
            &store,
        );
        assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
        assert!(body(&weak)["errors"]["password"]
            .as_str()
            .unwrap()
            .contains("too easy to guess"));
        let reset = as_caller(
            Method::POST,
            &format!("/users/{id}/password"),
            json!({"password": "clinic-rota-7-tulips"}),
            &admin,
            &store,
        );
        assert_eq!(reset.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            store.ended_before.borrow().len(),
            2,
            "a reset ends the sessions"
        );
        handle(
            &store,
            &post(
                "/login",
                json!({"email": "testuser@test.com", "password": "password123"}),
            ),
            None,
        );
        let seed = store
            .find(&Email::parse("testuser@test.com").unwrap())
            .unwrap()
            .unwrap();
        let own = as_caller(
            Method::POST,
            &format!("/users/{}/disable", seed.id),
            json!({}),
            &admin,
            &store,
        );
        assert_eq!(
            own.status(),
            StatusCode::CONFLICT,
            "an admin cannot disable themselves"
        );
        let clinician = Caller {
            subject: "nurse@clinic.test".into(),
            role: "CLINICIAN".into(),
        };
        assert_eq!(
            as_caller(Method::GET, "/users", json!({}), &clinician, &store).status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn a_user_changes_their_own_password_with_the_current_one_and_keeps_a_session() {
        let store = Memory::default();
        let admin = Caller {
            subject: "testuser@test.com".into(),
            role: "ADMIN".into(),
        };
        as_caller(
            Method::POST,
            "/users",
            json!({"email": "nurse@clinic.test", "password": "correct horse battery", "role": "CLINICIAN"}),
            &admin,
            &store,
        );
        let nurse = Caller {
            subject: "nurse@clinic.test".into(),
            role: "CLINICIAN".into(),
        };
        let wrong = as_caller(
            Method::PUT,
            "/password",
            json!({"currentPassword": "not it at all", "newPassword": "clinic-rota-7-tulips"}),
            &nurse,
            &store,
        );
        assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
        assert!(body(&wrong)["errors"]["currentPassword"].is_string());
        let changed = as_caller(
            Method::PUT,
            "/password",
            json!({"currentPassword": "correct horse battery", "newPassword": "clinic-rota-7-tulips"}),
            &nurse,
            &store,
        );
        assert_eq!(changed.status(), StatusCode::OK);
        let (_, from) = store.ended_before.borrow()[0].clone();
        let token = body(&changed)["token"].as_str().unwrap().to_string();
        let claims = tokens(&store).unwrap().verify(&token).unwrap();
        assert!(
            claims.iat >= from,
            "the new token outlives the sessions it ended"
        );
        let login = json!({"email": "nurse@clinic.test", "password": "clinic-rota-7-tulips"});
        assert_eq!(
            handle(&store, &post("/login", login), None).status(),
            StatusCode::OK
        );
    }

    #[test]
    fn signing_out_ends_that_token() {
        let store = Memory::default();
        let login = handle(
            &store,
            &post(
                "/login",
                json!({"email": "testuser@test.com", "password": "password123"}),
            ),
            None,
        );
        let token = body(&login)["token"].as_str().unwrap().to_string();
        let logout = Request::builder()
            .method(Method::POST)
            .uri("/logout")
            .header("authorization", format!("Bearer {token}"))
            .body(vec![])
            .unwrap();
        assert_eq!(
            handle(&store, &logout, None).status(),
            StatusCode::NO_CONTENT
        );
        let jti = tokens(&store).unwrap().verify(&token).unwrap().jti.unwrap();
        assert_eq!(*store.ended_tokens.borrow(), [jti]);
    }
}
