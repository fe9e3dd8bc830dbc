//! Helpers for end-to-end tests. They need a running lattice: `cargo xtask test` starts one and
//! sets PM_GATEWAY_URL; run by hand after `cargo xtask up` with
//! `PM_GATEWAY_URL=http://127.0.0.1:4004 cargo test -p e2e`.
#![allow(dead_code)]

pub mod events;
pub mod failover;
pub mod load;
pub mod stores;
pub mod summary;

/// Base URL of the gateway under test. Panics (failing the test) when unset, so the suite can
/// never pass without having talked to a lattice.
pub fn gateway() -> String {
    std::env::var("PM_GATEWAY_URL")
        .expect("PM_GATEWAY_URL is not set: run the end-to-end tests with `cargo xtask test`")
}

pub type Headers = Vec<(String, String)>;

/// GET returning status, headers (lower-cased names) and the JSON body (Null when not JSON),
/// for any status code.
pub fn get(url: &str) -> (u16, Headers, serde_json::Value) {
    into_parts(ureq::get(url).call())
}

pub fn into_parts(
    result: Result<ureq::Response, ureq::Error>,
) -> (u16, Headers, serde_json::Value) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed before an HTTP answer: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|name| {
            let value = response.header(&name).unwrap_or_default().to_string();
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    let text = response.into_string().unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Base URL of the provider probe (deployed by `cargo xtask test` beside the platform).
pub fn probe() -> String {
    std::env::var("PM_PROBE_URL")
        .expect("PM_PROBE_URL is not set: run the end-to-end tests with `cargo xtask test`")
}

/// Any method with an optional JSON body; returns status, headers and JSON body for any status.
pub fn send(
    method: &str,
    url: &str,
    body: Option<&serde_json::Value>,
) -> (u16, Headers, serde_json::Value) {
    let request = ureq::request(method, url).timeout(std::time::Duration::from_secs(30));
    into_parts(match body {
        Some(json) => request.send_json(json.clone()),
        None => request.call(),
    })
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` every 100 ms until it returns Some or `timeout` passes (then panics with `what`).
pub fn eventually<T>(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The lattice's own token issuer (its JWT key, auth's issuer), as auth signs tokens, read
/// once: the key when the test binary first asked (a rotation keeps it accepted).
pub fn lattice_tokens() -> &'static kit::tokens::Tokens {
    static TOKENS: std::sync::OnceLock<kit::tokens::Tokens> = std::sync::OnceLock::new();
    TOKENS.get_or_init(current_tokens)
}

/// The issuer with the key auth signs with now, as the stack keeps it.
pub fn current_tokens() -> kit::tokens::Tokens {
    let file = std::env::var("PM_JWT_SECRET_FILE").expect("PM_JWT_SECRET_FILE is not set");
    let secret = std::fs::read_to_string(file).expect("the lattice's JWT secret");
    kit::tokens::Tokens::new(secret.trim().as_bytes(), "patient-management")
        .expect("a usable JWT secret")
}

/// A token for `subject` with `role`, valid for an hour. The rate limiter keys on the subject,
/// so a load that must not be limited uses a subject per request.
pub fn token(subject: &str, role: &str) -> String {
    lattice_tokens()
        .issue(subject, role, kit::tokens::now(), 3600)
        .expect("a signed token")
        .0
}

/// A new patient's body, registered on `day` (a day of the test's own keeps counts exact).
pub fn new_patient(day: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "Load Patient",
        "email": format!("{}@example.test", unique("load")),
        "address": "1 Load Street",
        "dateOfBirth": "1990-01-01",
        "registeredDate": day,
    })
}

/// Registers `n` patients and books each at once (`start`–`end`), no pause between, each pair
/// as a user of its own (so the rate limiter stays out of it). Returns each pair's statuses with
/// the booking's answer, and a line of figures.
pub fn register_then_book(
    n: usize,
    start: &str,
    end: &str,
) -> (Vec<(u16, u16, serde_json::Value)>, String) {
    let began = std::time::Instant::now();
    let pairs: Vec<(u16, u16, serde_json::Value)> = (0..n)
        .map(|i| {
            let client = Client {
                forwarded_for: unique_address(),
                token: Some(token(&unique(&format!("pair-{i}")), "CLINICIAN")),
            };
            let (created, _, patient) =
                client.request("POST", "/api/patients", Some(&new_patient("2026-01-15")));
            let booking = serde_json::json!({
                "patientId": patient["id"], "startTime": start, "endTime": end, "reason": "First visit",
            });
            let (booked, _, answer) = client.request("POST", "/api/appointments", Some(&booking));
            if booked == 201 {
                assert_eq!(answer["patientName"], patient["name"], "booked under the name just registered");
            }
            (created, booked, answer)
        })
        .collect();
    let both = pairs
        .iter()
        .filter(|(c, b, _)| (*c, *b) == (201, 201))
        .count();
    let figures = format!(
        "{both} of {n} register-then-book pairs 201/201 in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    (pairs, figures)
}

/// An address no other caller of this run has, for `X-Forwarded-For`: the gateway believes that
/// header from loopback (its default trusted proxy) and only when it holds an IP. IPv6 unique
/// local addresses, told apart by process and a counter.
pub fn unique_address() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "fd00::{:x}:{:x}:{:x}",
        std::process::id(),
        n >> 16,
        n & 0xffff
    )
}

/// A caller with its own rate-limit identity: its own `X-Forwarded-For` while anonymous, its own
/// user once logged in, so parallel tests never share a bucket.
pub struct Client {
    pub forwarded_for: String,
    pub token: Option<String>,
}

impl Client {
    pub fn anonymous() -> Self {
        Self {
            forwarded_for: unique_address(),
            token: None,
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, Headers, serde_json::Value) {
        into_parts(self.send(method, path, body))
    }

    /// The HTTP status, or `None` when no HTTP answer came (the connection was dropped).
    pub fn status_if_answered(&self, method: &str, path: &str) -> Option<u16> {
        match self.send(method, path, None) {
            Ok(r) => Some(r.status()),
            Err(ureq::Error::Status(status, _)) => Some(status),
            Err(_) => None,
        }
    }

    /// A request to the gateway as this client (its address, its token if any).
    fn builder(&self, method: &str, path: &str) -> ureq::Request {
        let mut request = ureq::request(method, &format!("{}{path}", gateway()))
            .timeout(std::time::Duration::from_secs(30))
            .set("x-forwarded-for", &self.forwarded_for);
        if let Some(token) = &self.token {
            request = request.set("authorization", &format!("Bearer {token}"));
        }
        request
    }

    // ureq's own error type, passed straight on to callers that read its status.
    #[allow(clippy::result_large_err)]
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<ureq::Response, ureq::Error> {
        let request = self.builder(method, path);
        match body {
            Some(json) => request.send_json(json.clone()),
            None => request.call(),
        }
    }

    /// Like `request`, but waits out a 429 (for set-up steps, not for what a test asserts).
    pub fn patiently(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, Headers, serde_json::Value) {
        waiting_out_429(&format!("{method} {path}"), || {
            self.request(method, path, body)
        })
    }

    /// `patiently` with a body sent as is, under `content_type` (for bodies that are not JSON).
    pub fn patiently_raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, Headers, serde_json::Value) {
        waiting_out_429(&format!("{method} {path}"), || {
            into_parts(
                self.builder(method, path)
                    .set("content-type", content_type)
                    .send_string(body),
            )
        })
    }

    pub fn login(email: &str, password: &str) -> Self {
        let mut client = Self::anonymous();
        let (status, _, body) = client.patiently(
            "POST",
            "/auth/login",
            Some(&serde_json::json!({ "email": email, "password": password })),
        );
        assert_eq!(status, 200, "login of {email}: {body}");
        client.token = Some(body["token"].as_str().expect("token").to_string());
        client
    }

    pub fn seed_admin() -> Self {
        let password =
            std::env::var("PM_SEED_ADMIN_PASSWORD").unwrap_or_else(|_| "password123".into());
        Self::login("testuser@test.com", &password)
    }

    /// A fresh user with `role`, logged in.
    pub fn new_user(role: &str) -> Self {
        let email = format!("{}@clinic.test", unique("staff"));
        let password = "correct horse battery";
        let (status, _, body) = Self::seed_admin().patiently(
            "POST",
            "/auth/users",
            Some(&serde_json::json!({ "email": email, "password": password, "role": role })),
        );
        assert_eq!(status, 201, "creating {role} {email}: {body}");
        Self::login(&email, password)
    }
}

/// Sends until the answer is not 429, waiting as `Retry-After` says between tries.
fn waiting_out_429(
    what: &str,
    send: impl Fn() -> (u16, Headers, serde_json::Value),
) -> (u16, Headers, serde_json::Value) {
    for _ in 0..30 {
        let answer = send();
        if answer.0 != 429 {
            return answer;
        }
        let wait = answer
            .1
            .iter()
            .find(|(k, _)| k == "retry-after")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(1);
        std::thread::sleep(std::time::Duration::from_secs(wait));
    }
    panic!("{what} stayed rate limited");
}

/// Runs `cargo xtask <args> <lattice under test>` (e.g. `broker stop`), as the outage tests do.
pub fn xtask(args: &[&str]) {
    xtask_output(args);
}

/// `xtask`, returning what it printed on stdout (its progress goes to stderr, shown as is).
pub fn xtask_output(args: &[&str]) -> String {
    let lattice = std::env::var("PM_LATTICE").expect("PM_LATTICE is not set");
    xtask_alone(&[args, &[lattice.as_str()]].concat())
}

/// Runs `cargo xtask <args>` as given (a command that takes no lattice), returning its stdout.
pub fn xtask_alone(args: &[&str]) -> String {
    let xtask =
        std::env::var("PM_XTASK").expect("PM_XTASK is not set: run with `cargo xtask test`");
    let output = std::process::Command::new(xtask)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("xtask runs");
    assert!(output.status.success(), "xtask {args:?} failed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Where the cached tool `name` is (`cargo xtask tool-path <name>`): wash, host, ... Asked once
/// per tool: the answer checks every cached tool, and tests ask in polling loops.
pub fn tool_path(name: &str) -> String {
    static KNOWN: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = known.iter().find(|(tool, _)| tool == name) {
        return path.clone();
    }
    let path = xtask_alone(&["tool-path", name]);
    known.push((name.to_string(), path.clone()));
    path
}

/// Prints a test's figures and keeps them for `cargo xtask test` to print again at the end of
/// the run (a passing test's own output is not shown).
pub fn report(line: &str) {
    use std::io::Write;
    println!("{line}");
    if let Ok(dir) = std::env::var("PM_STACK_DIR") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::path::Path::new(&dir).join("figures.txt"))
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Runs `sql` with `psql` as the superuser on the machine's Postgres, in `database`, and returns
/// what it printed (unaligned, tuples only), trimmed: the tests' own session beside the
/// platform's, to look at or get in the way of what the providers do.
pub fn psql(database: &str, sql: &str) -> String {
    let output = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-qtAc",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Turns every host's calls through memory (to component instances on the same host) on or off
/// (SIGUSR2 / SIGUSR1 to the host launchers; see local/launchers/host): off, every call goes
/// over NATS, for a test about what NATS does to a call. Restores on drop.
pub struct CallsOverNats;

impl CallsOverNats {
    pub fn start() -> Self {
        signal_hosts("-USR1");
        Self
    }
}

impl Drop for CallsOverNats {
    fn drop(&mut self) {
        signal_hosts("-USR2");
    }
}

fn signal_hosts(signal: &str) {
    let dir = std::env::var("PM_STACK_DIR").expect("PM_STACK_DIR");
    let pids: Vec<String> = std::fs::read_dir(&dir)
        .expect("the stack's directory")
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.starts_with("host-") && name.ends_with(".pid")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|pid| pid.trim().to_string())
        .collect();
    assert!(!pids.is_empty(), "no host pid in {dir}");
    for pid in pids {
        // A host that is not running (killed by a test) has nothing to switch.
        let _ = std::process::Command::new("kill")
            .args([signal, &pid])
            .status();
    }
}
