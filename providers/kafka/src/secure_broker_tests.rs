//! A managed Kafka reached by values only: a broker that takes only SASL/SCRAM sign-ins behind
//! a TLS endpoint, as managed Kafka services run. The provider's settings, topic creation,
//! publisher and a consumer built from the same settings all go through it; a wrong password,
//! a CA that did not sign the broker's certificate and a client that does not sign in are all
//! refused.
//!
//! The broker is tansu (the lattice's own broker), with `--authentication`; tansu 0.6 parses but
//! does not serve TLS itself, so socat terminates TLS in front of it, and tansu advertises
//! socat's address. Needs `PM_TANSU`, the tansu binary (`cargo xtask test` sets it), and socat
//! and openssl (`cargo xtask test` installs what is missing).
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use provider_support::map_of as map;
use provider_support::testing::{certificate, free_port, wait_listening, Server};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

use crate::bindings::wasmcloud::messaging::types::BrokerMessage;
use crate::settings::{Settings, Values};
use crate::{topics, Publisher};

const USER: &str = "platform";
const STARTS_WITHIN: Duration = Duration::from_secs(30);

fn tansu() -> Command {
    Command::new(
        std::env::var_os("PM_TANSU")
            .expect("PM_TANSU names the tansu binary (cargo xtask test sets it)"),
    )
}

/// tansu on SQLite storage in `dir`, listening on `port` and advertising `advertised`.
fn broker(dir: &Path, port: u16, advertised: &str, authentication: bool) -> Server {
    let mut command = tansu();
    command
        .args(["broker", "--listener-url"])
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--advertised-listener-url")
        .arg(advertised)
        .args(["--storage-engine", "sqlite:///broker.db", "--silent"])
        .current_dir(dir)
        .env("CLUSTER_ID", "pm-secure-broker-test");
    if authentication {
        command.arg("--authentication");
    }
    Server::start(&mut command)
}

fn settings(
    port: u16,
    config: &[(&str, &str)],
    secrets: &[(&str, &str)],
) -> anyhow::Result<Settings> {
    let brokers = format!("localhost:{port}");
    let mut config: HashMap<String, String> = map(config);
    config.insert("BROKERS".into(), brokers);
    config.insert("TIMEOUT_MS".into(), "4000".into());
    Settings::resolve(&Values::new(&[&config], &[&map(secrets)]))
}

async fn publish(settings: Settings, body: &str) -> Result<(), String> {
    let publisher = Publisher::new(settings).map_err(|e| e.to_string())?;
    publisher
        .publish(&BrokerMessage {
            subject: "secured".into(),
            body: body.to_string().into_bytes().into(),
            reply_to: None,
        })
        .await
}

#[tokio::test]
async fn a_sasl_scram_broker_behind_tls_is_used_with_values_only() {
    let dir = std::env::temp_dir().join(format!("pm-kafka-secure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = certificate(&dir, "broker");
    let (other, _) = certificate(&dir, "other");
    let password = format!("pw-{}", std::process::id());
    let (plain, tls) = (free_port(), free_port());

    // The account is made while the broker still lets anyone in, as a managed service's console
    // would; the broker then restarts on the same storage requiring sign-in.
    {
        let _open = broker(&dir, plain, &format!("tcp://127.0.0.1:{plain}"), false);
        wait_listening(plain, "tansu", STARTS_WITHIN).await;
        let made = tansu()
            .args(["user", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{plain}"))
            .args([USER, &password, "--mechanism", "scram512"])
            .status()
            .expect("tansu user create runs");
        assert!(made.success(), "tansu made no user");
    }
    let _broker = broker(&dir, plain, &format!("tcp://localhost:{tls}"), true);
    wait_listening(plain, "tansu with authentication", STARTS_WITHIN).await;
    let _tls = Server::start(
        Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{tls},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
                cert.display(),
                key.display()
            ))
            .arg(format!("TCP:127.0.0.1:{plain}"))
            // It reports every refused handshake, which this test makes on purpose.
            .stderr(std::process::Stdio::null()),
    );
    wait_listening(tls, "socat's TLS endpoint", STARTS_WITHIN).await;

    let cert_file = cert.display().to_string();
    let secured = [
        ("SECURITY_PROTOCOL", "SASL_SSL"),
        ("SASL_MECHANISM", "SCRAM-SHA-512"),
        ("CA_FILE", cert_file.as_str()),
    ];
    let account = [
        ("SASL_USERNAME", USER),
        ("SASL_PASSWORD", password.as_str()),
    ];
    let good = settings(tls, &secured, &account).unwrap();
    assert_eq!(
        good.security.to_string(),
        "sasl_ssl (SCRAM-SHA-512 as platform)"
    );

    topics::create(&good, &["secured".to_string()])
        .await
        .expect("the topic is made over SASL_SSL");
    publish(good.clone(), "hello")
        .await
        .expect("published over SASL_SSL");
    let consumer: StreamConsumer = good
        .client()
        .set("group.id", "secure-broker-test")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["secured"]).unwrap();
    let record = tokio::time::timeout(STARTS_WITHIN, consumer.recv())
        .await
        .expect("a record arrives over SASL_SSL within 30 s")
        .expect("the consumer reads");
    assert_eq!(record.payload(), Some(&b"hello"[..]));

    let wrong_password = [("SASL_USERNAME", USER), ("SASL_PASSWORD", "not-it")];
    let refused = publish(settings(tls, &secured, &wrong_password).unwrap(), "x").await;
    assert!(refused.is_err(), "a wrong password was let in");

    let other_file = other.display().to_string();
    let other_ca = [secured[0], secured[1], ("CA_FILE", other_file.as_str())];
    let refused = publish(settings(tls, &other_ca, &account).unwrap(), "x").await;
    assert!(
        refused.is_err(),
        "a broker whose CA the provider does not hold was trusted"
    );

    let no_sign_in = [("SECURITY_PROTOCOL", "SSL"), secured[2]];
    let refused = publish(settings(tls, &no_sign_in, &[]).unwrap(), "x").await;
    assert!(
        refused.is_err(),
        "the broker served a client that did not sign in"
    );

    let _ = std::fs::remove_dir_all(&dir);
}
