//! Loopback probes: is a port free, what NATS listens there, does an HTTP endpoint answer.
//! Every probe has a short timeout so a wrong address fails fast instead of hanging.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// True when something already listens on 127.0.0.1:`port`.
pub fn port_taken(port: u16) -> bool {
    TcpListener::bind(loopback(port)).is_err()
}

/// True when a TCP connection to `addr` succeeds within `timeout` (a server is up there).
pub fn listening(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout).is_ok()
}

/// A port the OS considers free right now (for test stacks that must not collide).
/// A loopback port no process listens on, and that this run has not handed out before: a port
/// chosen for a server that starts later (the gateway's, say) is free again until it starts,
/// and the kernel may offer it a second time (seen: the gateway given the NATS port).
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind(loopback(0))?.local_addr()?.port();
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    anyhow::bail!("no loopback port left that this run has not handed out")
}

#[derive(Debug, PartialEq, Eq)]
pub struct NatsInfo {
    pub version: String,
    pub jetstream: bool,
    /// What a client signs to prove it holds its user's key (servers that authenticate).
    pub nonce: Option<String>,
}

/// Reads the INFO line a NATS server sends on connect.
pub fn nats_info(addr: SocketAddr) -> Result<NatsInfo> {
    nats_greeting(addr).map(|(info, _)| info)
}

/// A connection to the NATS at `addr` whose greeting was read: the server's INFO and the socket,
/// where the client speaks next (in plain text or, first, a TLS handshake). Reads time out.
pub fn nats_greeting(addr: SocketAddr) -> Result<(NatsInfo, TcpStream)> {
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
        .with_context(|| format!("nothing answers on {addr}"))?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .read_line(&mut line)
        .with_context(|| format!("{addr} accepted a connection but sent no NATS greeting"))?;
    let info = parse_nats_info(&line).with_context(|| format!("{addr} is not a NATS server"))?;
    Ok((info, stream))
}

pub fn parse_nats_info(line: &str) -> Result<NatsInfo> {
    let json = line
        .strip_prefix("INFO ")
        .context("greeting is not an INFO line")?;
    let info: serde_json::Value = serde_json::from_str(json.trim()).context("INFO is not JSON")?;
    Ok(NatsInfo {
        version: info["version"].as_str().unwrap_or("unknown").to_string(),
        jetstream: info["jetstream"].as_bool().unwrap_or(false),
        nonce: info["nonce"].as_str().map(str::to_string),
    })
}

/// wadm needs NATS 2.10+ with JetStream (2.9 rejects its consumers with error 10093).
pub fn require_usable_nats(info: &NatsInfo, addr: SocketAddr) -> Result<()> {
    let mut parts = info
        .version
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (2, 10) {
        bail!(
            "NATS at {addr} is version {}; the lattice needs NATS 2.10 or newer (wadm cannot \
             create its consumers on older servers). Point PM_NATS_URL elsewhere or let \
             `cargo xtask up` start its own.",
            info.version
        );
    }
    if !info.jetstream {
        bail!(
            "NATS at {addr} (version {}) runs without JetStream; start it with -js",
            info.version
        );
    }
    Ok(())
}

/// A plain HTTP/1.1 GET; returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status line")?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `check` until it returns Ok(true) or `timeout` passes; `what` names the wait in errors.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            let cause = last_error.map(|e| format!(": {e:#}")).unwrap_or_default();
            bail!(
                "timed out after {}s waiting for {what}{cause}",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_line() {
        let info = parse_nats_info(r#"INFO {"server_id":"x","version":"2.15.1","jetstream":true}"#)
            .unwrap();
        assert_eq!(
            info,
            NatsInfo {
                version: "2.15.1".into(),
                jetstream: true,
                nonce: None,
            }
        );
    }

    #[test]
    fn rejects_nats_older_than_2_10_naming_the_version() {
        let old = NatsInfo {
            version: "2.9.10".into(),
            jetstream: true,
            nonce: None,
        };
        let err = require_usable_nats(&old, loopback(4222))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2.9.10") && err.contains("2.10"), "{err}");
        let new = NatsInfo {
            version: "2.10.0".into(),
            jetstream: true,
            nonce: None,
        };
        assert!(require_usable_nats(&new, loopback(4222)).is_ok());
        let no_js = NatsInfo {
            version: "2.15.1".into(),
            jetstream: false,
            nonce: None,
        };
        assert!(require_usable_nats(&no_js, loopback(4222)).is_err());
    }

    #[test]
    fn a_non_nats_listener_is_named() {
        let listener = TcpListener::bind(loopback(0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        });
        let err = format!("{:#}", nats_info(addr).unwrap_err());
        assert!(err.contains("is not a NATS server"), "{err}");
    }
}
