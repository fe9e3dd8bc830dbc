//! Just enough of a NATS client for xtask's few requests (is a provider instance still the same
//! one?), over TLS and as a user of the lattice when its NATS requires that (see security.rs).
//! A blocking socket and a short timeout: it keeps xtask free of an async runtime.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use data_encoding::{BASE64, BASE64URL_NOPAD};

use crate::net::nats_greeting;
use crate::security;

/// How to reach a lattice's NATS: TLS trusting `ca`, as the user of `creds`; with neither, in
/// plain text as nobody (a NATS the user runs).
#[derive(Clone, Debug, Default)]
pub struct NatsAuth {
    pub ca: Option<PathBuf>,
    pub creds: Option<PathBuf>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A connection whose CONNECT was sent.
fn connect(addr: SocketAddr, auth: &NatsAuth) -> Result<BufReader<Stream>> {
    // The server's INFO comes in plain text, before any TLS.
    let (info, tcp) = nats_greeting(addr)?;
    let stream = match &auth.ca {
        Some(ca) => Stream::Tls(Box::new(tls(tcp, addr, ca)?)),
        None => Stream::Plain(tcp),
    };
    let mut connect = serde_json::json!({
        "verbose": false, "pedantic": false, "headers": true, "no_responders": true,
        "tls_required": auth.ca.is_some(), "name": "xtask", "lang": "rust", "version": "0",
    });
    if let Some(creds) = &auth.creds {
        let (jwt, seed) = security::read_creds(creds)?;
        let key = nkeys::KeyPair::from_seed(&seed).context("a credentials seed")?;
        let nonce = info.nonce.context("NATS sent no nonce to sign")?;
        let signature = key
            .sign(nonce.as_bytes())
            .map_err(|e| anyhow::anyhow!("signing the NATS nonce: {e}"))?;
        connect["jwt"] = jwt.into();
        connect["sig"] = BASE64URL_NOPAD.encode(&signature).into();
    }
    let mut reader = BufReader::new(stream);
    write!(reader.get_mut(), "CONNECT {connect}\r\n")?;
    Ok(reader)
}

fn tls(
    tcp: TcpStream,
    addr: SocketAddr,
    ca: &std::path::Path,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pem_certificate(ca)?.into())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    Ok(rustls::StreamOwned::new(connection, tcp))
}

/// The DER bytes of the one certificate in a PEM file.
fn pem_certificate(path: &std::path::Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the CA {}", path.display()))?;
    let body: String = text
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    BASE64
        .decode(body.as_bytes())
        .with_context(|| format!("{} holds no PEM certificate", path.display()))
}

/// One request: the first answer's payload, or None when nobody subscribes to `subject` (NATS
/// says "no responders" at once) or no answer comes in time.
pub fn request(addr: SocketAddr, auth: &NatsAuth, subject: &str) -> Result<Option<String>> {
    let mut reader = connect(addr, auth)?;
    let inbox = format!("_INBOX.xtask.{}", std::process::id());
    write!(
        reader.get_mut(),
        "SUB {inbox} 1\r\nPUB {subject} {inbox} 0\r\n\r\n"
    )?;
    reader.get_mut().flush()?;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => bail!("NATS at {addr} closed the connection"),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["PING"] => reader.get_mut().write_all(b"PONG\r\n")?,
            // MSG <subject> <sid> <size>: the answer.
            ["MSG", _, _, size] => {
                let mut payload = vec![0; size.parse::<usize>()? + 2];
                reader.read_exact(&mut payload)?;
                payload.truncate(payload.len() - 2);
                return Ok(Some(String::from_utf8_lossy(&payload).into_owned()));
            }
            // HMSG with only headers: the "503 no responders" status.
            ["HMSG", ..] => return Ok(None),
            ["-ERR", ..] => bail!("NATS at {addr} refused the request: {}", line.trim()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::loopback;
    use std::net::TcpListener;

    /// A one-connection stand-in for NATS: greets, reads the client's three lines (CONNECT,
    /// SUB, PUB with its empty payload line), checks the request's subject, then sends `answer`.
    fn fake_nats(subject: &'static str, answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind(loopback(0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            writer
                .write_all(b"INFO {\"version\":\"2.15.1\",\"jetstream\":true}\r\n")
                .unwrap();
            let mut lines = Vec::new();
            for _ in 0..4 {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                lines.push(line);
            }
            assert!(lines[0].starts_with("CONNECT "), "{lines:?}");
            let inbox = lines[1].split_whitespace().nth(1).unwrap().to_string();
            assert_eq!(
                lines[2].split_whitespace().nth(1),
                Some(subject),
                "{lines:?}"
            );
            writer
                .write_all(answer.replace("INBOX", &inbox).as_bytes())
                .unwrap();
        });
        addr
    }

    #[test]
    fn a_nats_request_returns_the_answer() {
        let addr = fake_nats("pm.x.serving", "PING\r\nMSG INBOX 1 8\r\n123 4567\r\n");
        let answer = request(addr, &NatsAuth::default(), "pm.x.serving").unwrap();
        assert_eq!(answer.as_deref(), Some("123 4567"));
    }

    #[test]
    fn a_nats_request_nobody_serves_is_none() {
        let addr = fake_nats(
            "pm.x.serving",
            "HMSG INBOX 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
        );
        assert_eq!(
            request(addr, &NatsAuth::default(), "pm.x.serving").unwrap(),
            None
        );
    }
}
