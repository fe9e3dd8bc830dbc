//! The lattice lets no one in (issue 18): its NATS takes only its own users, over TLS, and each
//! user only the subjects it needs. Attempts are made with async-nats, the client the providers
//! use, against the running test lattice; each refusal has a control beside it (the same request
//! by a user allowed to make it succeeds), so a refusal cannot come from a broken attempt.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{ConnectOptions, Event};
use common::stores;

fn secrets() -> PathBuf {
    PathBuf::from(std::env::var("PM_STACK_DIR").expect("PM_STACK_DIR")).join("secrets")
}

fn nats_addr() -> String {
    std::env::var("PM_NATS_ADDR").expect("PM_NATS_ADDR")
}

fn lattice() -> String {
    std::env::var("PM_LATTICE").expect("PM_LATTICE")
}

/// A connection as `user` (a credentials file under the stack's secrets), with what the server
/// reported as errors on it.
async fn connect_as(user: &str) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let client = ConnectOptions::with_credentials_file(secrets().join(format!("{user}.creds")))
        .await
        .expect("credentials file")
        .add_root_certificates(secrets().join("ca.pem"))
        .require_tls(true)
        .request_timeout(Some(Duration::from_secs(3)))
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let Event::ServerError(error) = event {
                    seen.lock().unwrap().push(error.to_string());
                }
            }
        })
        .connect(format!("tls://{}", nats_addr()))
        .await
        .unwrap_or_else(|e| panic!("the {user} user connects over TLS: {e}"));
    (client, errors)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_client_without_credentials_is_refused() {
    runtime().block_on(async {
        let refused = ConnectOptions::new()
            .add_root_certificates(secrets().join("ca.pem"))
            .require_tls(true)
            .connect(format!("tls://{}", nats_addr()))
            .await
            .expect_err("a client without credentials must not connect");
        common::report(&format!(
            "secure lattice: connecting over TLS without credentials: refused ({refused})"
        ));
        // Control: the same connection with the operator's credentials is taken.
        let (operator, _) = connect_as("operator").await;
        operator
            .flush()
            .await
            .expect("the operator's connection is live");
    });
}

/// Plain text with valid credentials: the server wants a TLS handshake first and drops the
/// connection at the CONNECT (the credentials are never read, nor sent in clear to anyone).
#[test]
fn a_client_in_plain_text_is_refused() {
    let mut stream = TcpStream::connect(nats_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut info = String::new();
    BufReader::new(stream.try_clone().unwrap())
        .read_line(&mut info)
        .unwrap();
    assert!(info.contains("\"tls_required\":true"), "{info}");
    let _ = stream.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("PONG"),
        "a plain-text client was answered: {answer}"
    );
    common::report(&format!(
        "secure lattice: plain-text CONNECT: connection closed by the server ({} bytes answered, no PONG)",
        answer.len()
    ));
}

/// With the credentials every provider holds (the hosts' RPC user), none of the control commands
/// an intruder would want goes through: starting a component, putting a config, putting a link.
/// The operator's user, making the same config request, gets it done.
#[test]
fn a_providers_credentials_cannot_command_the_lattice() {
    runtime().block_on(async {
        let l = lattice();
        let (provider, errors) = connect_as("host-rpc").await;
        let name = format!("pm-intrusion-{}", std::process::id());
        let attempts = [
            (
                format!("wasmbus.ctl.v1.{l}.component.scale.any-host"),
                r#"{"component_ref":"file:///tmp/evil.wasm","component_id":"evil","count":1}"#
                    .to_string(),
            ),
            (
                format!("wasmbus.ctl.v1.{l}.config.put.{name}"),
                r#"{"jwt_secret":"attacker"}"#.to_string(),
            ),
            (
                format!("wasmbus.ctl.v1.{l}.link.put"),
                r#"{"source_id":"gateway","target":"evil","name":"default","wit_namespace":"pm","wit_package":"platform","interfaces":["service"]}"#
                    .to_string(),
            ),
        ];
        for (subject, payload) in &attempts {
            let answer = provider
                .request(subject.clone(), payload.clone().into())
                .await;
            assert!(answer.is_err(), "{subject} was answered for a provider");
        }
        provider.flush().await.unwrap();
        // The server's -ERRs precede its PONG; the client reports them from its own task.
        let all_reported = || {
            let seen = errors.lock().unwrap();
            attempts.iter().all(|(subject, _)| {
                seen.iter().any(|e| e.contains(subject.as_str()))
            })
        };
        for _ in 0..100 {
            if all_reported() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let refused = errors.lock().unwrap().clone();
        for (subject, _) in &attempts {
            assert!(
                refused
                    .iter()
                    .any(|e| e.contains("Permissions Violation for Publish") && e.contains(subject.as_str())),
                "NATS did not refuse {subject}: {refused:?}"
            );
        }
        // Nothing was stored: the operator finds no such config.
        let (operator, _) = connect_as("operator").await;
        let get = format!("wasmbus.ctl.v1.{l}.config.get.{name}");
        let stored = operator.request(get.clone(), "".into()).await.unwrap();
        let stored: serde_json::Value = serde_json::from_slice(&stored.payload).unwrap();
        assert!(
            stored["response"].as_object().is_none_or(|m| m.is_empty()),
            "the provider's config put reached the lattice: {stored}"
        );
        // Control: the operator's put of the same config takes effect, then is removed.
        let put = operator
            .request(attempts[1].0.clone(), r#"{"k":"v"}"#.into())
            .await
            .expect("the operator's config put is answered");
        assert!(
            String::from_utf8_lossy(&put.payload).contains("\"success\":true"),
            "{:?}",
            put.payload
        );
        let stored = operator.request(get, "".into()).await.unwrap();
        assert!(String::from_utf8_lossy(&stored.payload).contains("\"k\":\"v\""));
        operator
            .request(format!("wasmbus.ctl.v1.{l}.config.del.{name}"), "".into())
            .await
            .unwrap();
        common::report(&format!(
            "secure lattice: {} control commands with a provider's credentials, {} refused by NATS: {}",
            attempts.len(),
            attempts.len(),
            attempts
                .iter()
                .map(|(s, _)| s.split('.').skip(4).take(2).collect::<Vec<_>>().join("."))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    });
}

/// Secrets go only to the component they are mapped to (issue 18, item 2). The platform's own
/// reference to the JWT key (`SECRET_patient_management-jwt_secret`, which wadm made from the
/// manifest) is handed to two components that are not the gateway or auth: the probe component,
/// signed with its own identity, and the same code unsigned. The host asks the secrets backend
/// for the key as it starts each, the backend refuses, and the host reports the start failed.
/// The control is the platform itself: the gateway and auth, mapped to the key, started with it
/// (every authenticated request of the suite needs it).
#[test]
fn a_component_not_mapped_to_a_secret_cannot_get_it() {
    use futures::StreamExt;
    runtime().block_on(async {
        let l = lattice();
        let (operator, _) = connect_as("operator").await;
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let thieves = [
            (
                "signed with an identity not mapped to the key",
                repo.join("build/provider-probe.wasm"),
            ),
            (
                "unsigned",
                repo.join("target/wasm32-wasip2/release/provider_probe.wasm"),
            ),
        ];
        let ping = operator
            .request(format!("wasmbus.ctl.v1.{l}.host.ping"), "".into())
            .await
            .expect("a host answers the ping");
        let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
        let host_id = ping["response"]["id"].as_str().expect("a host id").to_string();
        let mut events = operator
            .subscribe(format!("wasmbus.evt.{l}.>"))
            .await
            .unwrap();
        let mut refusals = Vec::new();
        for (n, (what, wasm)) in thieves.iter().enumerate() {
            assert!(wasm.exists(), "{} is built", wasm.display());
            let id = format!("pm_thief_{}_{n}", std::process::id());
            let scale = serde_json::json!({
                "component_ref": format!("file://{}", wasm.canonicalize().unwrap().display()),
                "component_id": id,
                "host_id": host_id,
                "count": 1,
                "config": ["SECRET_patient_management-jwt_secret"],
            });
            let answer = operator
                .request(
                    format!("wasmbus.ctl.v1.{l}.component.scale.{host_id}"),
                    scale.to_string().into(),
                )
                .await
                .expect("the host answers the scale");
            let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
            assert_eq!(answer["success"], true, "the host took the request: {answer}");
            let outcome = tokio::time::timeout(Duration::from_secs(30), async {
                while let Some(event) = events.next().await {
                    let event: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
                    if event["data"]["component_id"] == id.as_str() {
                        return (event["type"].as_str().unwrap_or("").to_string(), event["data"].clone());
                    }
                }
                panic!("the event stream ended");
            })
            .await
            .unwrap_or_else(|_| panic!("no event about {id} within 30 s"));
            if !outcome.0.ends_with("component_scale_failed") {
                // It started: stop it before failing.
                let stop = serde_json::json!({"component_ref": scale["component_ref"], "component_id": id, "host_id": host_id, "count": 0});
                let _ = operator
                    .request(format!("wasmbus.ctl.v1.{l}.component.scale.{host_id}"), stop.to_string().into())
                    .await;
                panic!("a component {what} started with the JWT key: {outcome:?}");
            }
            let error = outcome.1["error"].as_str().unwrap_or_default().to_string();
            assert!(
                error.contains("secret"),
                "the start failed for another reason than the secret: {error}"
            );
            refusals.push(format!("{what}: {error}"));
        }
        common::report(&format!(
            "secure lattice: {} components asked for the JWT key, {} refused: {}",
            thieves.len(),
            refusals.len(),
            refusals.join("; ")
        ));
    });
}

/// Each service reaches Postgres as its own role, owner of its schema only (issue 18, item 3):
/// patients' role (as the login role its provider uses) cannot read auth's users nor write
/// billing's accounts; the control is the same role reading its own table.
#[test]
fn a_services_database_role_reaches_only_its_own_schema() {
    let role = stores::login_role("patients");
    let as_patients = |sql: &str| stores::psql_as(&role, sql);
    let (ok, own) = as_patients("SELECT count(*) >= 0 FROM patients.patients");
    assert!(
        ok && own == "t",
        "patients' role reads its own table: {own}"
    );
    let attempts = [
        "SELECT email FROM auth.users LIMIT 1",
        "INSERT INTO billing.accounts DEFAULT VALUES",
        "CREATE TABLE auth.intruder (x int)",
    ];
    let mut refused = Vec::new();
    for sql in attempts {
        let (ok, answer) = as_patients(sql);
        assert!(
            !ok && answer.contains("permission denied"),
            "patients' role ran `{sql}`: {answer}"
        );
        refused.push(sql);
    }
    common::report(&format!(
        "secure lattice: patients' Postgres role: {} statements on other services' schemas, {} refused (permission denied); its own table readable",
        attempts.len(),
        refused.len()
    ));
}

/// The platform reaches Redis as an ACL user limited to its key prefix (issue 18, item 3):
/// reading or writing a key outside it, or a dangerous command, is refused, and a wrong password
/// does not log in; the control is the same user writing and reading under its prefix.
#[test]
fn the_platforms_redis_user_touches_only_its_prefix() {
    let prefix = std::env::var("PM_KEY_PREFIX").expect("PM_KEY_PREFIX");
    let (user, password) = stores::redis_user();
    let redis = |pass: &str, args: &[&str]| stores::redis_as(&user, pass, args);
    let own = format!("{prefix}acl-probe");
    let (_, set) = redis(&password, &["SET", &own, "1", "EX", "60"]);
    let (_, get) = redis(&password, &["GET", &own]);
    assert_eq!(
        (set.as_str(), get.as_str()),
        ("OK", "1"),
        "the user works under its prefix"
    );
    let attempts: [&[&str]; 4] = [
        &["GET", "someone-else:key"],
        &["SET", "someone-else:key", "x"],
        &["FLUSHALL"],
        &["CONFIG", "GET", "*"],
    ];
    for args in attempts {
        let (_, answer) = redis(&password, args);
        assert!(
            answer.contains("NOPERM"),
            "{args:?} was not refused: {answer}"
        );
    }
    let (_, wrong) = redis("not-the-password", &["GET", &own]);
    assert!(
        wrong.contains("WRONGPASS") || wrong.contains("AUTH"),
        "a wrong password logged in: {wrong}"
    );
    common::report(&format!(
        "secure lattice: the platform's Redis user: {} commands outside its prefix or dangerous, {} refused (NOPERM); a wrong password refused",
        attempts.len(),
        attempts.len()
    ));
}
