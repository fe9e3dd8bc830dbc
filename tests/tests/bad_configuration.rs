//! `cargo xtask up` refuses bad configuration at once, naming the problem, before it builds or
//! starts anything.
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

fn xtask_up(args: &[&str], nats_url: &str) -> Output {
    let xtask =
        std::env::var("PM_XTASK").expect("PM_XTASK is not set: run with `cargo xtask test`");
    Command::new(xtask)
        .arg("up")
        .args(args)
        .env("PM_NATS_URL", nats_url)
        .output()
        .expect("xtask runs")
}

/// A server that greets like NATS 2.9 (which wadm cannot work with).
fn fake_old_nats() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(b"INFO {\"version\":\"2.9.10\",\"jetstream\":true}\r\n");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    port
}

#[test]
fn nats_older_than_2_10_is_refused_by_version() {
    let port = fake_old_nats();
    let output = xtask_up(&["--http-port", "0"], &format!("nats://127.0.0.1:{port}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("version 2.9.10") && stderr.contains("2.10 or newer"),
        "{stderr}"
    );
}

#[test]
fn unreachable_nats_is_named() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = xtask_up(&["--http-port", "0"], &format!("nats://127.0.0.1:{port}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("nothing answers on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn a_taken_gateway_port_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = xtask_up(
        &["--http-port", &port],
        &format!("nats://127.0.0.1:{}", fake_old_nats()),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("port {port} is already in use")),
        "{stderr}"
    );
}
