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
