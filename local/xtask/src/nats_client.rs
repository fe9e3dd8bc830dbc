//! Just enough of a NATS client for xtask's few requests (is a provider instance still the same
//! one?), over TLS and as a user of the lattice when its NATS requires that (see security.rs).
//! A blocking socket and a short timeout: it keeps xtask free of an async runtime.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

impl Stream {
    fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.set_read_timeout(Some(timeout)),
            Stream::Tls(s) => s.sock.set_read_timeout(Some(timeout)),
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

/// One request on a connection of its own: the first answer's payload, or None when nobody
/// subscribes to `subject` (NATS says "no responders" at once) or no answer comes in time.
pub fn request(addr: SocketAddr, auth: &NatsAuth, subject: &str) -> Result<Option<String>> {
    Connection::open(addr, auth)?.request(subject, ANSWER_TIMEOUT)
}

/// How long a request waits for its answer by default (a host under load takes a while).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection for several requests in turn (a scatter-gather, then one request per answer).
pub struct Connection {
    addr: SocketAddr,
    reader: BufReader<Stream>,
    inbox: String,
    /// Each request's subscription id; answers to an earlier one are ignored.
    sid: u64,
    /// What arrived on the watched subject (`watch`) and was not taken yet.
    events: std::collections::VecDeque<String>,
}

/// The subscription id of `watch` (requests number theirs from 1).
const WATCH_SID: &str = "w";

/// One thing the server sent that xtask acts on.
enum Frame {
    /// A message for subscription `sid`.
    Message { sid: String, payload: String },
    /// "No responders" for subscription `sid`.
    NoResponders { sid: String },
    /// Nothing came before the deadline.
    Timeout,
}

impl Connection {
    pub fn open(addr: SocketAddr, auth: &NatsAuth) -> Result<Self> {
        Ok(Self {
            addr,
            reader: connect(addr, auth)?,
            inbox: format!("_INBOX.xtask.{}", std::process::id()),
            sid: 0,
            events: Default::default(),
        })
    }

    /// Subscribes `subject` (the lattice's events, say): what arrives there from now on is kept
    /// for `next_event`, also while a request waits for its answer. The server takes the
    /// subscription before any later request on this connection, so an event that a request
    /// causes is never missed.
    pub fn watch(&mut self, subject: &str) -> Result<()> {
        let writer = self.reader.get_mut();
        write!(writer, "SUB {subject} {WATCH_SID}\r\n")?;
        writer.flush()?;
        Ok(())
    }

    /// The next message on the watched subject, or None when none came before `deadline`.
    pub fn next_event(&mut self, deadline: Instant) -> Result<Option<String>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            match self.read_frame(deadline)? {
                Frame::Timeout => return Ok(None),
                Frame::Message { sid, payload } if sid == WATCH_SID => {
                    self.events.push_back(payload)
                }
                _ => {}
            }
        }
    }

    /// The first answer to `subject` within `timeout`; None when nobody serves it.
    pub fn request(&mut self, subject: &str, timeout: Duration) -> Result<Option<String>> {
        self.request_with(subject, b"", timeout)
    }

    /// `request` with `payload` as the request's body.
    pub fn request_with(
        &mut self,
        subject: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        self.publish(subject, payload)?;
        self.next_answer(deadline)
    }

    /// Every answer to `subject` that comes within `window`, or fewer as soon as `enough` says
    /// the answers so far are all that is wanted (a scatter-gather has no last answer).
    pub fn gather(
        &mut self,
        subject: &str,
        window: Duration,
        mut enough: impl FnMut(&[String]) -> bool,
    ) -> Result<Vec<String>> {
        let deadline = Instant::now() + window;
        self.publish(subject, b"")?;
        let mut answers = Vec::new();
        loop {
            match self.next_answer(deadline)? {
                Some(payload) => answers.push(payload),
                None => return Ok(answers),
            }
            if enough(&answers) {
                return Ok(answers);
            }
        }
    }

    /// Subscribes a fresh reply subject (the last request's goes) and publishes a request with
    /// `payload` to `subject`.
    fn publish(&mut self, subject: &str, payload: &[u8]) -> Result<()> {
        let old = self.sid;
        self.sid += 1;
        let (sid, inbox) = (self.sid, format!("{}.{}", self.inbox, self.sid));
        let writer = self.reader.get_mut();
        if old > 0 {
            write!(writer, "UNSUB {old}\r\n")?;
        }
        write!(
            writer,
            "SUB {inbox} {sid}\r\nPUB {subject} {inbox} {}\r\n",
            payload.len()
        )?;
        writer.write_all(payload)?;
        writer.write_all(b"\r\n")?;
        writer.flush()?;
        Ok(())
    }

    /// The next answer to the current request. None when the deadline passed or NATS said
    /// nobody serves the subject.
    fn next_answer(&mut self, deadline: Instant) -> Result<Option<String>> {
        let current = self.sid.to_string();
        loop {
            match self.read_frame(deadline)? {
                Frame::Timeout => return Ok(None),
                Frame::Message { sid, payload } if sid == current => return Ok(Some(payload)),
                Frame::Message { sid, payload } if sid == WATCH_SID => {
                    self.events.push_back(payload)
                }
                Frame::NoResponders { sid } if sid == current => return Ok(None),
                _ => {}
            }
        }
    }

    /// The next message or status the server sends, answering its PINGs meanwhile.
    fn read_frame(&mut self, deadline: Instant) -> Result<Frame> {
        let mut line = String::new();
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(Frame::Timeout);
            };
            self.reader
                .get_ref()
                .set_read_timeout(left.max(Duration::from_millis(1)))?;
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => bail!("NATS at {} closed the connection", self.addr),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Frame::Timeout)
                }
                Err(e) => return Err(e.into()),
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["PING"] => self.reader.get_mut().write_all(b"PONG\r\n")?,
                // MSG <subject> <sid> <size>: a message.
                ["MSG", _, sid, size] => {
                    let sid = sid.to_string();
                    let payload = self.read_payload(size)?;
                    return Ok(Frame::Message { sid, payload });
                }
                // MSG <subject> <sid> <reply-to> <size>: one that asks for an answer.
                ["MSG", _, sid, _, size] => {
                    let sid = sid.to_string();
                    let payload = self.read_payload(size)?;
                    return Ok(Frame::Message { sid, payload });
                }
                // HMSG <subject> <sid> <header size> <total size>: with only headers, the
                // "503 no responders" status.
                ["HMSG", _, sid, _, size] => {
                    let sid = sid.to_string();
                    self.read_payload(size)?;
                    return Ok(Frame::NoResponders { sid });
                }
                ["-ERR", ..] => bail!("NATS at {} refused the request: {}", self.addr, line.trim()),
                _ => {}
            }
        }
    }

    fn read_payload(&mut self, size: &str) -> Result<String> {
        let mut payload = vec![0; size.parse::<usize>()? + 2];
        self.reader.read_exact(&mut payload)?;
        payload.truncate(payload.len() - 2);
        Ok(String::from_utf8_lossy(&payload).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::loopback;
    use std::net::TcpListener;

    /// A one-connection stand-in for NATS: greets, reads the client's lines up to its request
    /// (CONNECT, SUBs, PUB with its payload line), checks the request's subject, then sends
    /// `answer` and keeps the connection open.
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
            // Up to the request: CONNECT, SUBs, then PUB <subject> <inbox> <size> and its payload.
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let done = line.starts_with("PUB ");
                lines.push(line);
                if done {
                    let mut payload = String::new();
                    reader.read_line(&mut payload).unwrap();
                    break;
                }
            }
            assert!(lines[0].starts_with("CONNECT "), "{lines:?}");
            let publish: Vec<&str> = lines.last().unwrap().split_whitespace().collect();
            assert_eq!(publish[1], subject, "{lines:?}");
            let inbox = publish[2].to_string();
            writer
                .write_all(answer.replace("INBOX", &inbox).as_bytes())
                .unwrap();
            // Open until the client goes, as a server that has nothing more to say.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
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

    #[test]
    fn a_gather_ends_when_the_answers_are_enough() {
        let addr = fake_nats("pm.x.ping", "MSG INBOX 1 1\r\na\r\nMSG INBOX 1 1\r\nb\r\n");
        let mut connection = Connection::open(addr, &NatsAuth::default()).unwrap();
        let started = Instant::now();
        let answers = connection
            .gather("pm.x.ping", Duration::from_secs(30), |a| a.len() == 2)
            .unwrap();
        assert_eq!(answers, ["a", "b"]);
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_watched_event_that_comes_during_a_request_is_kept() {
        let addr = fake_nats(
            "pm.x.do",
            "MSG ev.x w 5\r\nfirst\r\nMSG INBOX 1 2\r\nok\r\nMSG ev.x w 6\r\nsecond\r\n",
        );
        let mut connection = Connection::open(addr, &NatsAuth::default()).unwrap();
        connection.watch("ev.x").unwrap();
        let answer = connection
            .request_with("pm.x.do", b"", Duration::from_secs(5))
            .unwrap();
        assert_eq!(answer.as_deref(), Some("ok"));
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            connection.next_event(deadline).unwrap().as_deref(),
            Some("first")
        );
        assert_eq!(
            connection.next_event(deadline).unwrap().as_deref(),
            Some("second")
        );
        let soon = Instant::now() + Duration::from_millis(100);
        assert_eq!(connection.next_event(soon).unwrap(), None);
    }

    #[test]
    fn a_gather_ends_with_its_window() {
        let addr = fake_nats("pm.x.ping", "MSG INBOX 1 1\r\na\r\n");
        let mut connection = Connection::open(addr, &NatsAuth::default()).unwrap();
        let answers = connection
            .gather("pm.x.ping", Duration::from_millis(300), |_| false)
            .unwrap();
        assert_eq!(answers, ["a"]);
    }
}
