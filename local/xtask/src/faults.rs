//! A TCP proxy the end-to-end tests put between the platform's providers and a data store, so a
//! test can make the store misbehave for this lattice alone (the machine's Postgres and Redis
//! serve other runs too, so they are never paused themselves):
//!
//! - `pass`: bytes flow both ways;
//! - `hang`: connections are accepted and kept, but nothing flows either way (what a paused or
//!   overloaded server, or a network that drops packets, looks like to a client);
//! - `refuse`: every open connection is closed and new ones are closed at once (a server that
//!   stopped, or restarts).
//!
//! The proxies run as threads of `cargo xtask test` for the whole run. Tests switch them with one
//! line over a control socket (`PM_FAULTS_ADDR`): `<store> <mode>`, answered `ok` once it holds,
//! e.g. `postgres hang`. See `tests/tests/hung_dependencies.rs`.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use anyhow::{bail, Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Hang,
    Refuse,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pass" => Ok(Self::Pass),
            "hang" => Ok(Self::Hang),
            "refuse" => Ok(Self::Refuse),
            _ => bail!("no mode `{s}` (pass, hang or refuse)"),
        }
    }
}

/// One proxied store: its mode, and the sockets of its open connections by id (to close them).
struct Proxy {
    mode: Mutex<Mode>,
    changed: Condvar,
    open: Mutex<HashMap<u64, [TcpStream; 2]>>,
}

impl Proxy {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
        self.changed.notify_all();
        if mode == Mode::Refuse {
            for sockets in self.open.lock().unwrap_or_else(|p| p.into_inner()).values() {
                for socket in sockets {
                    let _ = socket.shutdown(Shutdown::Both);
                }
            }
        }
    }

    /// Blocks while the mode is `hang`; false when the connection must end.
    fn may_flow(&self) -> bool {
        let mut mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        while *mode == Mode::Hang {
            mode = self.changed.wait(mode).unwrap_or_else(|p| p.into_inner());
        }
        *mode == Mode::Pass
    }
}

/// Starts a proxy per store (`name` → the store's address) and the control socket; returns each
/// proxy's address (what the lattice is told to connect to) and the control address. The
/// proxies listen on `bind`: loopback, or this machine's bridge address, where simulated machines
/// reach the stores that listen on loopback only.
pub fn start(
    bind: IpAddr,
    stores: &[(&str, SocketAddr)],
) -> Result<(HashMap<String, SocketAddr>, SocketAddr)> {
    let mut proxies = HashMap::new();
    let mut addresses = HashMap::new();
    for (name, upstream) in stores {
        let listener = TcpListener::bind((bind, 0)).context("binding a fault proxy")?;
        addresses.insert(name.to_string(), listener.local_addr()?);
        let proxy = Arc::new(Proxy {
            mode: Mutex::new(Mode::Pass),
            changed: Condvar::new(),
            open: Mutex::new(HashMap::new()),
        });
        proxies.insert(name.to_string(), Arc::clone(&proxy));
        let upstream = *upstream;
        thread::spawn(move || accept_loop(listener, upstream, proxy));
    }
    let control = TcpListener::bind("127.0.0.1:0").context("binding the fault control socket")?;
    let control_addr = control.local_addr()?;
    thread::spawn(move || {
        for client in control.incoming().flatten() {
            let proxies = proxies.clone();
            thread::spawn(move || serve_control(client, &proxies));
        }
    });
    Ok((addresses, control_addr))
}

fn serve_control(client: TcpStream, proxies: &HashMap<String, Arc<Proxy>>) {
    let Ok(mut writer) = client.try_clone() else {
        return;
    };
    for line in BufReader::new(client).lines() {
        let Ok(line) = line else { return };
        let answer = match line.trim().split_once(' ') {
            Some((name, mode)) => match (proxies.get(name), mode.parse::<Mode>()) {
                (Some(proxy), Ok(mode)) => {
                    proxy.set(mode);
                    "ok".to_string()
                }
                (None, _) => format!("no store `{name}`"),
                (_, Err(e)) => e.to_string(),
            },
            None => "expected `<store> <mode>`".to_string(),
        };
        if writeln!(writer, "{answer}").is_err() {
            return;
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, proxy: Arc<Proxy>) {
    for (id, client) in (0u64..).zip(listener.incoming().flatten()) {
        if proxy.mode() == Mode::Refuse {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect(upstream) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let sockets = (client.try_clone(), server.try_clone());
        let (Ok(client_copy), Ok(server_copy)) = sockets else {
            continue;
        };
        if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
            proxy
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, [a, b]);
        }
        let upward = Arc::clone(&proxy);
        thread::spawn(move || pump(id, client, server, &upward));
        let downward = Arc::clone(&proxy);
        thread::spawn(move || pump(id, server_copy, client_copy, &downward));
    }
}

/// Copies `from` to `to` while the mode lets bytes flow; closes both when either end closes or
/// the store is refused.
fn pump(id: u64, mut from: TcpStream, mut to: TcpStream, proxy: &Proxy) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !proxy.may_flow() || to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    proxy
        .open
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A server that echoes each connection's bytes back.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let mut writer = stream;
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        addr
    }

    fn command(control: SocketAddr, line: &str) {
        let mut stream = TcpStream::connect(control).unwrap();
        writeln!(stream, "{line}").unwrap();
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).unwrap();
        assert_eq!(answer.trim(), "ok", "{line}");
    }

    fn echo(stream: &mut TcpStream, text: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(text)?;
        let mut back = vec![0u8; text.len()];
        stream.read_exact(&mut back)?;
        Ok(back)
    }

    #[test]
    fn the_proxy_passes_holds_and_refuses_on_command() {
        let (proxies, control) = start(
            std::net::Ipv4Addr::LOCALHOST.into(),
            &[("store", echo_server())],
        )
        .unwrap();
        let addr = proxies["store"];
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(echo(&mut client, b"one").unwrap(), b"one");

        command(control, "store hang");
        assert!(
            echo(&mut client, b"two").is_err(),
            "nothing flows while hung"
        );
        command(control, "store pass");
        let mut held = [0u8; 3];
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_exact(&mut held).unwrap();
        assert_eq!(&held, b"two", "what was held arrives once it passes again");

        command(control, "store refuse");
        let mut rest = Vec::new();
        assert_eq!(
            client.read_to_end(&mut rest).unwrap_or(0),
            0,
            "open connections are closed"
        );
        let mut late = TcpStream::connect(addr).unwrap();
        late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(
            echo(&mut late, b"x").is_err(),
            "new ones are closed at once"
        );
    }
}
