//! What makes a lattice's NATS refuse strangers (issue 18): a certificate authority and a server
//! certificate for TLS, and NATS decentralized authentication (an operator, a system account, one
//! account for the lattice, and a user per kind of client, each with the subjects it needs).
//!
//! Why JWT users and not the simpler nkey users of a NATS config file: the wasmCloud host and the
//! provider SDK authenticate only with a user JWT and its seed (`ConnectOptions::with_jwt`), and the
//! host hands its RPC user to every provider it starts. Why JWTs of our own making: the one crate
//! that writes NATS JWTs (`nats-jwt` 0.3) has no operator claims and no JetStream limits, and an
//! account without JetStream limits cannot use JetStream, which wadm and the host need.
//!
//! Everything is made once per stack, under `<stack dir>/secrets/` (mode 700, files 600), never in
//! the repository; `up` on a running stack reuses it.
use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use nkeys::KeyPair;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::secret_store;

/// The kinds of NATS client of a lattice, each a user of the lattice's account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum User {
    /// A host's control connection: takes control commands, publishes events, keeps the
    /// lattice's data and config buckets.
    HostControl,
    /// A host's RPC connection, which the host also hands to every provider it starts: wRPC
    /// calls and the host-to-provider subjects, and nothing of the control plane.
    HostRpc,
    /// wadm: sends control commands, reads events, keeps its state in JetStream.
    Wadm,
    /// `wash`, xtask and an operator: the control interface and wadm's API, and storing
    /// secrets in the secrets backend.
    Operator,
    /// The secrets backend (secret_store.rs): answers on its subjects, keeps its buckets.
    SecretsBackend,
}

impl User {
    pub const ALL: [User; 5] = [
        User::HostControl,
        User::HostRpc,
        User::Wadm,
        User::Operator,
        User::SecretsBackend,
    ];

    pub fn name(self) -> &'static str {
        match self {
            User::HostControl => "host-control",
            User::HostRpc => "host-rpc",
            User::Wadm => "wadm",
            User::Operator => "operator",
            User::SecretsBackend => "secrets-backend",
        }
    }

    /// (may publish, may subscribe) for lattice `l`. `_INBOX.>` both ways: wRPC and every request
    /// of the control interface answer on inbox subjects the requester subscribed.
    fn permissions(self, l: &str) -> (Vec<String>, Vec<String>) {
        let s = |subjects: &[&str]| -> Vec<String> {
            subjects.iter().map(|s| s.replace("{l}", l)).collect()
        };
        // The host's JetStream key-value buckets (lattice data and named config).
        let host_buckets = [
            s(&[
                "$JS.API.INFO",
                "$KV.LATTICEDATA_{l}.>",
                "$KV.CONFIGDATA_{l}.>",
                "$JS.FC.>",
            ]),
            stream_api(&format!("KV_LATTICEDATA_{l}")),
            stream_api(&format!("KV_CONFIGDATA_{l}")),
        ]
        .concat();
        let backend = secret_store::SUBJECT;
        match self {
            User::HostControl => (
                [
                    s(&[
                        "wasmbus.evt.{l}.>",
                        "_INBOX.>",
                        // Asking a secrets backend for its key and for a secret; not writing one.
                        "wasmcloud.secrets.v1alpha1.*.server_xkey",
                        "wasmcloud.secrets.v1alpha1.*.get",
                    ]),
                    host_buckets,
                ]
                .concat(),
                s(&["wasmbus.ctl.v1.{l}.>", "_INBOX.>"]),
            ),
            User::HostRpc => (
                // `pm.{l}.>`: the providers' own subjects (a provider answers whether it serves).
                // `link.get`, the one control request: a provider lists the links the hosts hold
                // to find one it missed at start-up (providers/support/src/links.rs). It reads
                // link names and the names of their configs and secrets, no values.
                s(&[
                    "{l}.>",
                    "wasmbus.rpc.{l}.>",
                    "pm.{l}.>",
                    "_INBOX.>",
                    "wasmbus.ctl.v1.{l}.link.get",
                ]),
                s(&["{l}.>", "wasmbus.rpc.{l}.>", "pm.{l}.>", "_INBOX.>"]),
            ),
            User::Wadm => (
                s(&[
                    "wasmbus.ctl.v1.{l}.>",
                    "wadm.>",
                    "_INBOX.>",
                    "$JS.API.>",
                    "$JS.ACK.>",
                    "$JS.FC.>",
                    "$KV.wadm_state.>",
                    "$KV.wadm_manifests.>",
                ]),
                s(&["wasmbus.evt.{l}.>", "wasmbus.evt.*.>", "wadm.>", "_INBOX.>"]),
            ),
            User::Operator => (
                [
                    s(&[
                        "wasmbus.ctl.v1.{l}.>",
                        "wadm.api.{l}.>",
                        "pm.{l}.>",
                        "_INBOX.>",
                    ]),
                    // Storing secrets and saying who may read them.
                    vec![format!("{backend}.>")],
                    // Replicating the lattice's streams across a NATS cluster's nodes.
                    s(&[
                        "$JS.API.INFO",
                        "$JS.API.STREAM.NAMES",
                        "$JS.API.STREAM.INFO.*",
                        "$JS.API.STREAM.UPDATE.*",
                    ]),
                ]
                .concat(),
                s(&["wasmbus.evt.{l}.>", "wadm.status.{l}.>", "_INBOX.>"]),
            ),
            // Its buckets: the secrets, who may read them, and the lock on that mapping.
            User::SecretsBackend => (
                [
                    s(&[
                        "_INBOX.>",
                        "$JS.API.INFO",
                        "$KV.WASMCLOUD_SECRETS.>",
                        "$KV.SECRETS_nats-kv_state.>",
                        "SECRETS_nats-kv_state_lock.>",
                        "$JS.ACK.>",
                        "$JS.FC.>",
                    ]),
                    stream_api("KV_WASMCLOUD_SECRETS"),
                    stream_api("KV_SECRETS_nats-kv_state"),
                    stream_api("SECRETS_nats-kv_state_lock"),
                ]
                .concat(),
                vec![format!("{backend}.>"), "_INBOX.>".to_string()],
            ),
        }
    }
}

/// The JetStream API subjects about stream `name`: `$JS.API.<kind>.<op>.<name>` (stream info,
/// create, ...), the same with a consumer or filter after it, and
/// `$JS.API.<kind>.<op>.<op>.<name>` (e.g. `STREAM.MSG.DELETE`, `DIRECT.GET`-style calls).
fn stream_api(name: &str) -> Vec<String> {
    vec![
        format!("$JS.API.*.*.{name}"),
        format!("$JS.API.*.*.{name}.>"),
        format!("$JS.API.*.*.*.{name}"),
    ]
}

/// The lattice CA's certificate parameters. The same every time: a certificate signed later with
/// the kept key names this issuer, which is what clients check it against.
fn ca_params() -> Result<rcgen::CertificateParams> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "patient-management lattice CA");
    Ok(ca)
}

/// A NATS server certificate (PEM) and its key (PEM) for 127.0.0.1, localhost and `addresses`:
/// clients reach a node by the loopback address, by name, or at its machine's address.
fn node_certificate(
    addresses: &[IpAddr],
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    names.extend(
        addresses
            .iter()
            .map(IpAddr::to_string)
            .filter(|a| a != "127.0.0.1"),
    );
    names.dedup();
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "patient-management NATS");
    Ok((params.signed_by(&key, issuer)?.pem(), key.serialize_pem()))
}

/// A node's place in a NATS cluster: the cluster's name, where it takes routes from the other
/// nodes, and where they are.
pub struct Cluster {
    pub name: String,
    pub listen: SocketAddr,
    pub routes: Vec<SocketAddr>,
}

impl Cluster {
    /// The `cluster` block: routes over TLS, each side proving itself with a certificate the
    /// lattice's CA signed (no other server can join), nodes learning each other from any one.
    fn conf(&self, secrets: &Secrets) -> String {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| format!("{:?}", format!("tls://{r}")))
            .collect();
        format!(
            "cluster {{\n  name: {name:?}\n  listen: {listen:?}\n  routes: [{routes}]\n  \
             tls {{ cert_file: {cert:?}, key_file: {key:?}, ca_file: {ca:?}, verify: true, timeout: 5 }}\n}}\n",
            name = self.name,
            listen = self.listen.to_string(),
            routes = routes.join(", "),
            cert = secrets.server_cert(),
            key = secrets.server_key(),
            ca = secrets.ca(),
        )
    }
}

/// A lattice's TLS and NATS credentials, as files.
pub struct Secrets {
    pub dir: PathBuf,
}

impl Secrets {
    /// The CA certificate every client trusts for the lattice's NATS.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("nats-server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("nats-server.key")
    }
    /// The NATS config fragment with the operator, the accounts and the resolver.
    pub fn auth_conf(&self) -> PathBuf {
        self.dir.join("nats-auth.conf")
    }
    /// A user's credentials file (JWT and seed, in the format NATS clients read).
    pub fn creds(&self, user: User) -> PathBuf {
        self.dir.join(format!("{}.creds", user.name()))
    }

    /// Writes the nats-server configuration of one node (beside the credentials it includes:
    /// nats-server resolves `include` relative to the including file) and returns its path. It
    /// listens on `addr` with JetStream in `store`, requires TLS on every connection and a user
    /// of the lattice's account, and, in a cluster, routes to the other nodes.
    pub fn write_server_conf(
        &self,
        addr: SocketAddr,
        name: &str,
        store: &Path,
        cluster: Option<&Cluster>,
    ) -> Result<PathBuf> {
        let path = self.dir.join(format!("{name}.conf"));
        let mut conf = format!(
            "# Written by xtask.\nlisten: {addr:?}\nserver_name: {name:?}\n\
             jetstream {{ store_dir: {store:?} }}\n\
             tls {{ cert_file: {cert:?}, key_file: {key:?}, timeout: 5 }}\n\
             include \"nats-auth.conf\"\n",
            addr = addr.to_string(),
            cert = self.server_cert(),
            key = self.server_key(),
        );
        if let Some(cluster) = cluster {
            conf += &cluster.conf(self);
        }
        fs::write(&path, conf)?;
        Ok(path)
    }

    /// Makes whatever is missing under `dir` for `lattice`; what exists is kept (the running
    /// NATS and every client already use it). The server certificate names 127.0.0.1, localhost
    /// and `addresses` (where the nodes and the registry listen on simulated or real machines).
    pub fn ensure(dir: &Path, lattice: &str, addresses: &[IpAddr]) -> Result<Secrets> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let secrets = Secrets {
            dir: dir.to_path_buf(),
        };
        if !secrets.server_key().exists() || !secrets.ca().exists() {
            secrets.make_tls(addresses)?;
        }
        if !secrets.auth_conf().exists() || User::ALL.iter().any(|u| !secrets.creds(*u).exists()) {
            secrets.make_auth(lattice)?;
        }
        Ok(secrets)
    }

    /// The CA's private key, kept (mode 600) so that a NATS node joining later on another
    /// machine can be given a certificate for its address (`issue_node_certificate`).
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    fn make_tls(&self, addresses: &[IpAddr]) -> Result<()> {
        let ca_key = rcgen::KeyPair::generate()?;
        let ca_cert = ca_params()?.self_signed(&ca_key)?;
        write_private(&self.ca_key(), &ca_key.serialize_pem())?;
        let issuer = rcgen::Issuer::new(ca_params()?, ca_key);
        let (cert, key) = node_certificate(addresses, &issuer)?;
        write_private(&self.server_key(), &key)?;
        write_private(&self.server_cert(), &cert)?;
        write_private(&self.ca(), &ca_cert.pem())
    }

    /// A certificate and key for a NATS node at `address`, signed by this lattice's CA, written
    /// into `into` under the names a node's files have (`server_cert`, `server_key`), with the
    /// CA beside them.
    pub fn issue_node_certificate(&self, address: IpAddr, into: &Secrets) -> Result<()> {
        let ca_key = fs::read_to_string(self.ca_key()).with_context(|| {
            format!(
                "{} is missing: this lattice's CA key was not kept when it was made; bring the \
                 lattice up anew to add NATS nodes to it",
                self.ca_key().display()
            )
        })?;
        let issuer = rcgen::Issuer::new(ca_params()?, rcgen::KeyPair::from_pem(&ca_key)?);
        let (cert, key) = node_certificate(&[address], &issuer)?;
        write_private(&into.server_key(), &key)?;
        write_private(&into.server_cert(), &cert)?;
        fs::copy(self.ca(), into.ca())?;
        Ok(())
    }

    fn make_auth(&self, lattice: &str) -> Result<()> {
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let account = KeyPair::new_account();
        let operator_jwt = encode(
            &operator,
            &operator.public_key(),
            "patient-management",
            json!({"type": "operator", "version": 2, "system_account": system.public_key()}),
        )?;
        let system_jwt = encode(
            &operator,
            &system.public_key(),
            "SYS",
            json!({"type": "account", "version": 2, "limits": limits(false)}),
        )?;
        let account_jwt = encode(
            &operator,
            &account.public_key(),
            lattice,
            json!({"type": "account", "version": 2, "limits": limits(true)}),
        )?;
        for user in User::ALL {
            let key = KeyPair::new_user();
            let (publish, subscribe) = user.permissions(lattice);
            let jwt = encode(
                &account,
                &key.public_key(),
                user.name(),
                json!({
                    "type": "user", "version": 2,
                    "pub": {"allow": publish}, "sub": {"allow": subscribe},
                    "subs": -1, "data": -1, "payload": -1,
                }),
            )?;
            let seed = key.seed().context("a new user key has its seed")?;
            write_private(&self.creds(user), &creds_file(&jwt, &seed))?;
        }
        let conf = format!(
            "operator: {operator_jwt:?}\nsystem_account: {system:?}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system:?}: {system_jwt:?}\n  {account:?}: {account_jwt:?}\n}}\n",
            system = system.public_key(),
            account = account.public_key(),
        );
        write_private(&self.auth_conf(), &conf)
    }
}

/// An account's limits: unlimited, with JetStream only for the lattice's account (the system
/// account may not have it).
fn limits(jetstream: bool) -> Value {
    let mut limits = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
    });
    if jetstream {
        for key in ["mem_storage", "disk_storage", "streams", "consumer"] {
            limits[key] = json!(-1);
        }
    }
    limits
}

/// A NATS JWT (header, claims, ed25519 signature by `issuer`): `jti` is the base32 SHA-256 of
/// the claims without it, as NATS' own tools make it.
fn encode(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> Result<String> {
    let issued = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut claims = json!({
        "jti": "", "iat": issued, "iss": issuer.public_key(), "name": name, "sub": subject,
        "nats": nats,
    });
    let digest = Sha256::digest(serde_json::to_vec(&claims)?);
    claims["jti"] = json!(BASE32_NOPAD.encode(&digest));
    let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = BASE64URL_NOPAD.encode(&serde_json::to_vec(&claims)?);
    let signing_input = format!("{header}.{body}");
    let signature = issuer
        .sign(signing_input.as_bytes())
        .map_err(|e| anyhow::anyhow!("signing a NATS JWT: {e}"))?;
    Ok(format!(
        "{signing_input}.{}",
        BASE64URL_NOPAD.encode(&signature)
    ))
}

fn creds_file(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// (JWT, seed) of a credentials file.
pub fn read_creds(path: &Path) -> Result<(String, String)> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading NATS credentials {}", path.display()))?;
    let after = |marker: &str| {
        text.lines()
            .skip_while(|line| !line.contains(marker))
            .nth(1)
            .map(|line| line.trim().to_string())
            .with_context(|| format!("{} has no {marker}", path.display()))
    };
    Ok((
        after("BEGIN NATS USER JWT")?,
        after("BEGIN USER NKEY SEED")?,
    ))
}

/// Writes `contents` to a file only its owner can read (whole or not at all).
/// `bytes` random bytes from the kernel, as hex.
pub fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buffer = vec![0u8; bytes];
    fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// The secret kept in `path` (mode 600): read back when it exists, else made by `make` once and
/// written, so it stays the same across runs.
pub fn kept_private(path: &Path, make: impl FnOnce() -> Result<String>) -> Result<String> {
    if let Ok(kept) = fs::read_to_string(path) {
        return Ok(kept.trim().to_string());
    }
    let made = make()?;
    write_private(path, &made)?;
    Ok(made)
}

pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    let partial = path.with_extension("partial");
    let _ = fs::remove_file(&partial);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)?
        .write_all(contents.as_bytes())?;
    fs::rename(&partial, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn claims(jwt: &str) -> Value {
        let body = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&BASE64URL_NOPAD.decode(body.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn a_jwt_is_signed_by_its_issuer_and_names_its_subject() {
        let account = KeyPair::new_account();
        let user = KeyPair::new_user();
        let jwt = encode(&account, &user.public_key(), "u", json!({"type": "user"})).unwrap();
        let (input, signature) = jwt.rsplit_once('.').unwrap();
        let signature = BASE64URL_NOPAD.decode(signature.as_bytes()).unwrap();
        KeyPair::from_public_key(&account.public_key())
            .unwrap()
            .verify(input.as_bytes(), &signature)
            .expect("the signature verifies with the issuer's public key");
        let claims = claims(&jwt);
        assert_eq!(claims["iss"], account.public_key());
        assert_eq!(claims["sub"], user.public_key());
        assert_eq!(claims["jti"].as_str().unwrap().len(), 52);
    }

    #[test]
    fn credentials_read_back_as_written() {
        let dir = std::env::temp_dir().join(format!("pm-creds-{}", std::process::id()));
        let secrets = Secrets::ensure(&dir, "t1", &[]).unwrap();
        for user in User::ALL {
            let path = secrets.creds(user);
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
            let (jwt, seed) = read_creds(&path).unwrap();
            let key = KeyPair::from_seed(&seed).unwrap();
            assert_eq!(claims(&jwt)["sub"], key.public_key());
        }
        let rpc = claims(&read_creds(&secrets.creds(User::HostRpc)).unwrap().0);
        let published: Vec<&str> = rpc["nats"]["pub"]["allow"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        // One read-only control request (the missed-link check), no command.
        let control: Vec<&&str> = published
            .iter()
            .filter(|s| s.starts_with("wasmbus.ctl"))
            .collect();
        assert_eq!(
            control,
            [&"wasmbus.ctl.v1.t1.link.get"],
            "the RPC user (every provider) may publish no control command but link.get: {published:?}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    /// A node certificate issued later, from the kept CA key, is for the node's address and
    /// checks out against the CA every client already trusts (openssl's verdict, not ours).
    #[test]
    fn a_node_certificate_issued_later_chains_to_the_lattice_ca() {
        let dir = std::env::temp_dir().join(format!("pm-node-cert-{}", std::process::id()));
        let secrets = Secrets::ensure(&dir.join("secrets"), "t3", &[]).unwrap();
        let node = Secrets {
            dir: dir.join("node"),
        };
        fs::create_dir_all(&node.dir).unwrap();
        secrets
            .issue_node_certificate("10.1.2.3".parse().unwrap(), &node)
            .unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let (ca, cert) = (node.ca(), node.server_cert());
        let (verified, said) = openssl(&[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            cert.to_str().unwrap(),
        ]);
        assert!(verified, "{said}");
        let (_, names) = openssl(&[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            cert.to_str().unwrap(),
        ]);
        assert!(names.contains("IP Address:10.1.2.3"), "{names}");
        // Another lattice's CA does not vouch for it.
        let other = Secrets::ensure(&dir.join("other"), "t4", &[]).unwrap();
        let (verified, _) = openssl(&[
            "verify",
            "-CAfile",
            other.ca().to_str().unwrap(),
            cert.to_str().unwrap(),
        ]);
        assert!(!verified);
        fs::remove_dir_all(dir).unwrap();
    }
}

/// The credentials against a real nats-server (the one `cargo xtask tools` caches).
#[cfg(test)]
mod server_tests {
    use super::*;
    use crate::nats_client::{request, NatsAuth};
    use crate::net::{free_port, listening, loopback};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    struct Server(Child, PathBuf);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = fs::remove_dir_all(&self.1);
        }
    }

    fn secured_nats(lattice: &str) -> (Server, Secrets, SocketAddr) {
        let dir = std::env::temp_dir().join(format!("pm-nats-{lattice}-{}", std::process::id()));
        let secrets = Secrets::ensure(&dir.join("secrets"), lattice, &[]).unwrap();
        let addr = loopback(free_port().unwrap());
        let conf = secrets
            .write_server_conf(addr, "pm-test", &dir.join("js"), None)
            .unwrap();
        let child = Command::new(crate::tools::nats_server().unwrap())
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server(child, dir);
        let started = Instant::now();
        while !listening(addr, Duration::from_millis(200)) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "NATS did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        (server, secrets, addr)
    }

    fn as_user(secrets: &Secrets, user: User) -> NatsAuth {
        NatsAuth {
            ca: Some(secrets.ca()),
            creds: Some(secrets.creds(user)),
        }
    }

    #[test]
    fn the_lattice_nats_takes_its_users_over_tls_and_refuses_everyone_else() {
        let (_server, secrets, addr) = secured_nats("t2");
        let subject = "wasmbus.ctl.v1.t2.host.ping";
        // The operator may send control commands (nobody answers here: no host).
        assert_eq!(
            request(addr, &as_user(&secrets, User::Operator), subject).unwrap(),
            None
        );
        let refused = |auth: NatsAuth, what: &str| {
            let err = request(addr, &auth, subject).expect_err(what);
            format!("{err:#}")
        };
        let no_user = refused(
            NatsAuth {
                ca: Some(secrets.ca()),
                creds: None,
            },
            "no credentials",
        );
        assert!(no_user.contains("Authorization Violation"), "{no_user}");
        // The same user in plain text: the server drops the connection at its first bytes.
        refused(
            NatsAuth {
                ca: None,
                creds: Some(secrets.creds(User::Operator)),
            },
            "plain text",
        );
        let provider = refused(as_user(&secrets, User::HostRpc), "a provider's user");
        assert!(provider.contains("Permissions Violation"), "{provider}");
    }
}
