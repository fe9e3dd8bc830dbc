//! Fixes to dependencies of the host launcher and the providers that their released versions
//! lack, applied at build time to a copy of the crate from crates.io (nothing upstream is kept in
//! this repo).
//! Each edit checks that the code it changes is where it expects, so a new release fails loudly
//! instead of being patched wrongly.
//!
//! - wrpc-transport-nats 0.29.0 (what wasmcloud-host 0.27.1 uses) routes every reply through one
//!   task whose `select!` may handle an arrived message before the command that subscribes to it,
//!   and then drops the message: the caller waits forever. On our 2 cores about one request in a
//!   thousand hung that way under load. Upstream fixed it in 0.31 (commit 2d3c810b, "apply
//!   subscription commands before routing messages"), which needs a newer async-nats than the
//!   host can take. The fix is to poll commands first (`biased;`).
//! - wrpc-transport-nats 0.29.0 also ends the parameters and the results of every call with an
//!   empty message that no peer reads (both ends decode exactly the values they expect): two of
//!   the five NATS messages a call makes. The edit leaves them out (`quiet_root_shutdown`).
//! - async-nats 0.39.0 (what wasmcloud-provider-sdk 0.17.1 uses) forgets a draining
//!   subscription as soon as its UNSUB is written, but the server may already have routed
//!   messages to it that are still on their way: they are dropped. A provider stopping for a
//!   restart lost the calls NATS handed it in that instant (3 in 4,000 under load); the caller
//!   waited 15 s for a 503. Other NATS clients (Go, C, TypeScript) send a PING after the UNSUB
//!   and keep the subscription until its PONG: the server answers in order, so by then every
//!   message routed before the UNSUB has arrived. nats-server (v2.14.5, client.go `deliverMsg`)
//!   appends a message under the subscriber's lock after checking the subscription is not
//!   closed, and the UNSUB closes it under that lock before the PING is answered; the one
//!   exception is a publisher held in a fast-producer stall, which waits with the lock released
//!   and checks only the connection afterwards. The edit waits for two round trips (see
//!   `confirm_drains`) to cover that too. (The losses `confirm_drains` cites as the reason were
//!   later found to be the drain test's own: messages published before the server had the other
//!   queue member's SUB; the test now waits for it.) It also adds
//!   `Client::drain_subscriptions(prefix)`, which the providers' drain (providers/support) calls
//!   for their invocation subjects, as the wRPC transport does not hand out its subscriptions.
//!   The host's build takes it too: see the next point.
//! - wasmcloud-host 0.27.1 stops a component's exports (scaled down or to 0, or replaced by an
//!   update) by aborting the task that reads its wRPC invocation subscriptions: the calls NATS
//!   had routed to them, and those accepted but waiting for a free instance, are dropped, and
//!   their callers get 503 after 15 s (measured: 5 of 28,631 reads failed over three swaps of
//!   patients, issue 16). The edits give the wRPC transport's client `drain_serving` (each
//!   invocation subscription drains through `Subscriber::drain`, which now also waits for the
//!   PONG) and make the host drain a stopped component's server instead; its export loop ends
//!   when the last routed call was taken.
//! - wasmcloud-host 0.27.1's built-in HTTP server drops the connection when the component fails
//!   to answer (a trap: for example the gateway calling a component that has no running
//!   instance, as while it is scaled to 0 or replaced). SPEC.md wants a 503; the edit answers
//!   503 problem+json with `Retry-After` there instead, and also when no answer came within
//!   25 s: a call whose callee's host died mid-call never returns otherwise (measured: requests
//!   in flight when a host was killed waited past 30 s).
//! - wasmcloud-host 0.27.1's built-in HTTP server drops the address of the connection a request
//!   came on (`Ok((stream, _))`), and wasi:http has no field for it, so the gateway could not
//!   tell clients apart: SPEC.md rate-limits an anonymous client by its address, and the audit
//!   trail (issue 20) records it. The gateway saw either one shared "anonymous" bucket or
//!   whatever `X-Forwarded-For` a client chose to send. The edit sets the request header
//!   `x-pm-peer-addr` to the connection's peer IP, replacing any a client sent (see
//!   `peer_addr_header`); the gateway trusts `X-Forwarded-For` only from the proxies its config
//!   names.
//! - wasmcloud-host 0.27.1's `provider_started` event names a `file://` provider by its bare
//!   path, so wadm, which waits for the event with the reference it asked for, ignores that
//!   provider's events for 30 s: a provider stopped in that window (as by a rolling restart)
//!   stays down until then. The edit sends the reference as requested.
//! - wasmcloud-host 0.27.1 built a new wRPC client for every call a component made over a link:
//!   a NATS subscription on a fresh inbox (SUB, then UNSUB) and a routing task per call. The
//!   edit keeps one client per link target for the life of the host.
//! - wasmcloud-host 0.27.1 sent every call between two components over NATS, also when both run
//!   on the same host: one such hop cost 190-220 µs of the 2-core machine, more than a whole
//!   trivial request (bench/README.md, issue 22). The edit serves each component's exports in
//!   memory too, and a call to a component with an instance on the calling host goes there
//!   (see `local_links`).
//! - wasmcloud-runtime 0.12.0 gives an instance's memory back with `madvise` after every
//!   invocation, so the next one page-faults it in again and each `madvise` stops the host's
//!   other threads for a TLB flush. Where Linux has `PAGEMAP_SCAN`, the edit lets wasmtime reset
//!   only the dirtied pages in place (see `resident_instance_memory`).
//! - wasmcloud-runtime 0.12.0 bounds each call a component makes by the component's whole
//!   execution time (10 minutes by default), the same deadline as the caller's own: a caller
//!   never outlives a call that gets no answer, so it cannot answer for it (issue 17: with one
//!   dependency hung, requests waited for the host's 15 s budget and got the host's 503). The
//!   edit bounds calls by the launcher's `PM_CALL_TIMEOUT_MS` (see `call_timeout`).
//! - wasmcloud-runtime 0.12.0 traps a component when the key-value provider answers an error to
//!   most `wasi:keyvalue` calls, instead of returning the error the WIT declares: with Redis
//!   hung, every read of patients trapped (see `keyvalue_errors_are_values`).
//! - wadm 0.21.1's spread scaler treats each spread as a hard requirement: when every host of
//!   one zone is gone, that zone's share of instances can be placed nowhere, the application
//!   turns Failed and the surviving zones keep only their own share. The edit makes spreads
//!   soft: while a spread has no live host, the instances are divided among the spreads that
//!   have one (by their weights), and the original division returns with the hosts.
//! - Replacing a component's image (hot swap) stops and cold-starts it in wadm 0.21.1 + host
//!   0.27.1, dropping requests: the image is part of the scaler's id, so a new manifest version
//!   is a new scaler whose clean-up scales the component to 0. And `wash update component`, which
//!   swaps in place, leaves the old code serving wRPC (it stops the new instance's exports
//!   instead of the old one's), drops wadm's annotations (wadm then loses track of the instances)
//!   and reports the component scaled to 0. The edits: the scaler's id leaves the image out, a
//!   scaler whose instances run another image than the manifest's asks each host to scale with
//!   the manifest's image, the host answers a scale to another image with its in-place update
//!   (as the control interface's `allow_update` does), and that update keeps the annotations,
//!   stops the old exports after the new ones serve, and reports only the new instances.
//! - tansu-storage 0.6.0 serves its SQLite storage from one task that takes requests off a
//!   channel; when a requester has gone before its answer is sent (a client that disconnected or
//!   timed out mid-request, as every client does while the broker restarts under load), or when
//!   one request fails, that task returns, and every later request fails. Fetching a consumer
//!   group then hits an `unreachable!()` (measured: a broker stopped and started under load
//!   panicked there and never served again, issue 17). The edit drops the orphaned answer, logs
//!   the failure and serves on (see `storage_outlives_requesters`).
//! - tansu-storage 0.6.0's SQLite `describe_groups` decodes a group's stored JSON text as a JSON
//!   string, so DescribeGroups of any existing group fails (see `groups_described`). nisshi 0.8
//!   (tansu's successor) fixes both, but needs Rust 1.96.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::paths;
use crate::process::run;
use crate::step;

/// The cargo workspaces built against fixed crates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Workspace {
    /// `local/launchers`: the wasmCloud host and wadm.
    Launchers,
    /// `providers`: the capability providers.
    Providers,
    /// The Kafka-compatible broker (tansu), built from its released crate.
    Broker,
}

impl std::str::FromStr for Workspace {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "launchers" => Ok(Self::Launchers),
            "providers" => Ok(Self::Providers),
            "broker" => Ok(Self::Broker),
            _ => bail!("no workspace `{name}` (launchers, providers or broker)"),
        }
    }
}

struct Patch {
    krate: &'static str,
    version: &'static str,
    /// Names the edit; part of the directory name so a changed edit is a new directory.
    edit: &'static str,
    why: &'static str,
    apply: fn(&Path) -> Result<()>,
    /// The workspaces whose builds take the fixed crate.
    used_by: &'static [Workspace],
}

const PATCHES: [Patch; 6] = [
    Patch {
        krate: "wrpc-transport-nats",
        version: "0.29.0",
        edit: "commands-before-messages-quiet-root-shutdown-drain-serving",
        why: "replies lost to a subscribe race; two messages of every call that no peer reads; \
              a component replaced drops the calls routed to it",
        apply: transport_edits,
        used_by: &[Workspace::Launchers, Workspace::Providers],
    },
    Patch {
        krate: "wasmcloud-host",
        version: "0.27.1",
        edit: "http-503-budget25-in-place-update-started-ref-shared-clients-drained-stop-peer-addr-local-links-free-permits",
        why:
            "a failed component answer is a 503, not a dropped connection; hitless image updates; \
              provider_started names the requested reference; one wRPC client per link target; \
              a component stopped or replaced finishes the calls routed to it; \
              requests carry their connection's peer address; a call to a component on the same \
              host goes through memory, not NATS",
        apply: host_edits,
        used_by: &[Workspace::Launchers],
    },
    Patch {
        krate: "wadm",
        version: "0.21.1",
        edit: "soft-spreads-image-updates",
        why: "a lost zone's instances move to the zones that remain; hitless image updates",
        apply: wadm_edits,
        used_by: &[Workspace::Launchers],
    },
    Patch {
        krate: "wasmcloud-runtime",
        version: "0.12.0",
        edit: "resident-instance-memory-call-timeout-keyvalue-errors",
        why: "an instance's memory is reset in place, without page faults or TLB shootdowns; \
              a call a component makes is bounded by its own timeout; a key-value error is a \
              value, not a trap",
        apply: runtime_edits,
        used_by: &[Workspace::Launchers],
    },
    Patch {
        krate: "async-nats",
        version: "0.39.0",
        edit: "drain-after-two-pongs-every-drain",
        why: "a provider or component that stops loses none of the calls routed to it",
        apply: drain_after_pong,
        used_by: &[Workspace::Launchers, Workspace::Providers],
    },
    Patch {
        krate: "tansu-storage",
        version: "0.6.0",
        edit: "storage-outlives-requesters-and-errors-groups-described",
        why: "the broker's storage keeps serving when a client leaves mid-request or a request fails; consumer groups can be described",
        apply: storage_edits,
        used_by: &[Workspace::Broker],
    },
];

/// The `--config` arguments that make a cargo build of `workspace` use its fixed crates.
pub fn cargo_configs(workspace: Workspace) -> Result<Vec<String>> {
    PATCHES
        .iter()
        .filter(|patch| patch.used_by.contains(&workspace))
        .map(|patch| {
            let dir = patched(patch)?;
            Ok(format!(
                "patch.crates-io.{}.path={:?}",
                patch.krate,
                dir.to_string_lossy()
            ))
        })
        .collect()
}

/// A copy of the crate with its edit applied, made once.
fn patched(patch: &Patch) -> Result<PathBuf> {
    let root = paths::cache().join("patches");
    let name = format!("{}-{}-{}", patch.krate, patch.version, patch.edit);
    let dir = root.join(&name);
    if dir.join(".patched").exists() {
        return Ok(dir);
    }
    step(&format!(
        "patching {} {} ({})",
        patch.krate, patch.version, patch.why
    ));
    let original = registry_source(&root.join("fetch"), patch.krate, patch.version)?;
    let staging = root.join(format!(".{name}.partial"));
    let _ = fs::remove_dir_all(&staging);
    copy_dir(&original, &staging)?;
    (patch.apply)(&staging).with_context(|| format!("{} {}", patch.krate, patch.version))?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&staging, &dir)?;
    fs::write(dir.join(".patched"), patch.edit)?;
    Ok(dir)
}

/// Replaces the one occurrence of `old` in `file` (below `crate_dir`) with `new`.
fn replace_once(crate_dir: &Path, file: &str, old: &str, new: &str) -> Result<()> {
    replace_exactly(crate_dir, file, old, new, 1)
}

/// Replaces the `count` occurrences of `old` in `file` with `new` (no more, no fewer).
fn replace_exactly(crate_dir: &Path, file: &str, old: &str, new: &str, count: usize) -> Result<()> {
    let path = crate_dir.join(file);
    let source = fs::read_to_string(&path)?;
    if source.matches(old).count() != count {
        bail!("{file}: the code to change is not where expected");
    }
    fs::write(&path, source.replace(old, new))?;
    Ok(())
}

/// Adds `code` (a new item) at the end of `file` (below `crate_dir`).
fn append(crate_dir: &Path, file: &str, code: &str) -> Result<()> {
    let path = crate_dir.join(file);
    let mut source = fs::read_to_string(&path)?;
    source.push_str(code);
    fs::write(&path, source)?;
    Ok(())
}

fn transport_edits(crate_dir: &Path) -> Result<()> {
    commands_before_messages(crate_dir)?;
    quiet_root_shutdown(crate_dir)?;
    drain_serving(crate_dir)
}

/// A component's exports were stopped by aborting the task that read its invocation
/// subscriptions: NATS had already routed some calls to them (and the task had accepted others
/// that waited for an instance), and those callers waited 15 s for a 503 (issue 16: 5 of 28,631
/// reads failed over three swaps of patients). A client's `drain_serving` now drains every
/// invocation subscription it serves instead: the server stops routing to them, every message it
/// routed before still arrives (the async-nats edit keeps a draining subscription until its PONG),
/// and only then do the invocation streams end.
fn drain_serving(crate_dir: &Path) -> Result<()> {
    let file = "src/lib.rs";
    replace_once(
        crate_dir,
        file,
        "    commands: mpsc::Sender<Command>,\n    tasks: Arc<JoinSet<()>>,\n}\n\nimpl Client {",
        "    commands: mpsc::Sender<Command>,\n    tasks: Arc<JoinSet<()>>,\n    \
         draining: tokio_util::sync::CancellationToken,\n}\n\nimpl Client {",
    )?;
    replace_once(
        crate_dir,
        file,
        "            commands: cmd_tx,\n            tasks: Arc::new(tasks),\n        })",
        "            commands: cmd_tx,\n            tasks: Arc::new(tasks),\n            \
         draining: tokio_util::sync::CancellationToken::new(),\n        })",
    )?;
    replace_once(
        crate_dir,
        file,
        "        Ok(sub.then(move |msg| {",
        "        Ok(drain_on_cancel(sub, self.draining.clone()).then(move |msg| {",
    )?;
    append(crate_dir, file, DRAIN_SERVING)
}

const DRAIN_SERVING: &str = r####"
// Added by patient-management's build (local/xtask/src/patches.rs).
impl Client {
    /// Stops serving without losing a call: every invocation subscription this client serves is
    /// drained, so the calls NATS routed to it are still delivered, and then its stream ends.
    pub fn drain_serving(&self) {
        self.draining.cancel();
    }
}

/// `sub`'s messages until `draining` is cancelled; then the subscription drains and the stream
/// ends after the last message the server routed to it.
fn drain_on_cancel(
    sub: async_nats::Subscriber,
    draining: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = async_nats::Message> + Send + 'static {
    futures::stream::unfold((sub, Some(draining)), |(mut sub, mut draining)| async move {
        if let Some(token) = draining.as_ref() {
            let cancelled = select! {
                biased;
                () = token.cancelled() => true,
                msg = sub.next() => return msg.map(|msg| (msg, (sub, draining))),
            };
            if cancelled {
                if let Err(err) = sub.drain().await {
                    // The connection is gone, and with it the subscription.
                    warn!(?err, "failed to drain an invocation subscription");
                    return None;
                }
                draining = None;
            }
        }
        let msg = sub.next().await?;
        Some((msg, (sub, draining)))
    })
}
"####;

/// Every call sent two messages that nobody reads: after the parameters, and again after the
/// results, an empty "end of stream" message on the root subject. Both ends decode exactly the
/// values they expect (wrpc-runtime-wasmtime's `call` and polyfill, wrpc-transport's
/// `serve_values` and `invoke_values`) and never wait for that end, so each empty message only
/// cost the sender, the NATS server and the receiver's routing a message apiece: two of the five
/// a call makes. A root writer that is shut down after writing everything now sends nothing.
/// One dropped without a shutdown (its call failed) still sends the end, so the peer stops
/// waiting at once; nested writers (streams and futures) still end with their message.
fn quiet_root_shutdown(crate_dir: &Path) -> Result<()> {
    let file = "src/lib.rs";
    replace_once(
        crate_dir,
        file,
        "    tx: Subject,\n    shutdown: bool,\n    tasks: Arc<JoinSet<()>>,\n}\n\nimpl SubjectWriter {",
        "    tx: Subject,\n    shutdown: bool,\n    tasks: Arc<JoinSet<()>>,\n    /// Writes a call's parameters or results (`new`), not a nested stream (`index`).\n    root: bool,\n}\n\nimpl SubjectWriter {",
    )?;
    replace_once(
        crate_dir,
        file,
        "            tx,\n            shutdown: false,\n            tasks,\n        }",
        "            tx,\n            shutdown: false,\n            tasks,\n            root: true,\n        }",
    )?;
    replace_once(
        crate_dir,
        file,
        "            shutdown: false,\n            tasks: Arc::clone(&self.tasks),\n        })",
        "            shutdown: false,\n            tasks: Arc::clone(&self.tasks),\n            root: false,\n        })",
    )?;
    replace_once(
        crate_dir,
        file,
        "        trace!(\"writing stream shutdown message\");\n        ready!(self.as_mut().poll_write(cx, &[]))?;\n",
        "        if self.root {\n            self.shutdown = true;\n            return Poll::Ready(Ok(()));\n        }\n        trace!(\"writing stream shutdown message\");\n        ready!(self.as_mut().poll_write(cx, &[]))?;\n",
    )
}

fn commands_before_messages(crate_dir: &Path) -> Result<()> {
    let message = "Some(msg) = sub.next() => handle_message(&mut subs, msg).await,";
    let command = "Some(cmd) = cmd_rx.recv() => handle_command(&mut subs, cmd),";
    let indent = " ".repeat(24);
    replace_once(
        crate_dir,
        "src/lib.rs",
        &format!("{message}\n{indent}{command}"),
        &format!("biased;\n{indent}{command}\n{indent}{message}"),
    )
}

/// Draining subscriptions stay until the server confirmed their UNSUB (see the module comment).
fn drain_after_pong(crate_dir: &Path) -> Result<()> {
    let lib = "src/lib.rs";
    replace_once(
        crate_dir,
        lib,
        "    Drain {\n        sid: Option<u64>,\n    },\n",
        "    Drain {\n        sid: Option<u64>,\n    },\n    DrainSubjects {\n        prefix: String,\n    },\n",
    )?;
    replace_once(
        crate_dir,
        lib,
        "    flush_observers: Vec<oneshot::Sender<()>>,\n    is_draining: bool,\n}",
        "    flush_observers: Vec<oneshot::Sender<()>>,\n    is_draining: bool,\n    \
         drains_awaiting_pong: Vec<(u64, usize, u8)>,\n}",
    )?;
    replace_once(
        crate_dir,
        lib,
        "            is_draining: false,\n        }\n    }",
        "            is_draining: false,\n            drains_awaiting_pong: Vec::new(),\n        }\n    }",
    )?;
    // Per poll, draining subscriptions went at once; those awaiting their PONG now stay.
    replace_once(
        crate_dir,
        lib,
        "self.handler.subscriptions.retain(|_, s| !s.is_draining);",
        "let handler = &mut *self.handler;\n                \
         let awaiting = &handler.drains_awaiting_pong;\n                \
         handler.subscriptions.retain(|sid, s| {\n                    \
         !s.is_draining || awaiting.iter().any(|(waiting, _, _)| waiting == sid)\n                });",
    )?;
    replace_once(
        crate_dir,
        lib,
        "debug!(\"received PONG\");",
        "debug!(\"received PONG\");\n                self.confirm_drains();",
    )?;
    replace_once(
        crate_dir,
        lib,
        "            Command::Drain { sid } => {",
        "            Command::DrainSubjects { prefix } => self.drain_subjects(&prefix),\n            \
         Command::Drain { sid } => {",
    )?;
    // A new connection has none of the old subscriptions: the drains are over.
    replace_once(
        crate_dir,
        lib,
        "        self.pending_pings = 0;\n",
        "        self.pending_pings = 0;\n        \
         for (sid, _, _) in std::mem::take(&mut self.drains_awaiting_pong) {\n            \
         self.subscriptions.remove(&sid);\n        }\n",
    )?;
    // A single subscription's drain (`Subscriber::drain`, as the wRPC transport's
    // `drain_serving` uses) waits for its PONG the same way.
    replace_once(
        crate_dir,
        lib,
        "                if let Some(sid) = sid {\n                    if let Some(sub) = self.subscriptions.get_mut(&sid) {\n                        drain_sub(sid, sub);\n                    }\n                } else {",
        "                if let Some(sid) = sid {\n                    self.drain_sids(vec![sid]);\n                } else {",
    )?;
    append(crate_dir, lib, DRAIN_AFTER_PONG_HANDLER)?;
    append(crate_dir, "src/client.rs", DRAIN_AFTER_PONG_CLIENT)
}

const DRAIN_AFTER_PONG_HANDLER: &str = r####"
// Added by patient-management's build (local/xtask/src/patches.rs).
impl ConnectionHandler {
    /// Unsubscribes every subscription under `prefix`, then pings: the server handles the
    /// UNSUBs before the PING, so its PONG follows every message it routed to them.
    fn drain_subjects(&mut self, prefix: &str) {
        let sids = self
            .subscriptions
            .iter()
            .filter(|(_, s)| s.subject.as_str().starts_with(prefix))
            .map(|(sid, _)| *sid)
            .collect();
        self.drain_sids(sids);
    }

    /// Unsubscribes `sids` (those not draining yet), then pings, as `drain_subjects` says.
    fn drain_sids(&mut self, mut sids: Vec<u64>) {
        sids.retain(|sid| match self.subscriptions.get_mut(sid) {
            Some(subscription) if !subscription.is_draining => {
                subscription.is_draining = true;
                true
            }
            _ => false,
        });
        for sid in &sids {
            self.connection
                .enqueue_write_op(&ClientOp::Unsubscribe { sid: *sid, max: None });
        }
        self.connection.enqueue_write_op(&ClientOp::Ping);
        self.pending_pings += 1;
        // PONGs come in the order of the PINGs: ours is the `pending_pings`-th from now.
        let pongs = self.pending_pings;
        self.drains_awaiting_pong
            .extend(sids.into_iter().map(|sid| (sid, pongs, DRAIN_ROUNDS)));
    }

    /// Counts a PONG (called before the caller takes it off `pending_pings`). A subscription
    /// whose PONG it was pings once more, or, after its last round, ends (its stream closes).
    /// The server answers this connection's UNSUB and PING in order, but it routes a message on
    /// the publisher's connection: one routed to the subscription just before the UNSUB can be
    /// queued behind the PONG (measured: 70 of 22,785 messages lost in the drain test on a
    /// loaded machine with one round). The second round trip lets those arrive.
    fn confirm_drains(&mut self) {
        let subscriptions = &mut self.subscriptions;
        let mut again = Vec::new();
        self.drains_awaiting_pong.retain_mut(|(sid, pongs, rounds)| {
            *pongs = pongs.saturating_sub(1);
            if *pongs > 0 {
                return true;
            }
            if *rounds > 1 {
                again.push((*sid, *rounds - 1));
            } else {
                subscriptions.remove(sid);
            }
            false
        });
        if !again.is_empty() {
            self.connection.enqueue_write_op(&ClientOp::Ping);
            self.pending_pings += 1;
            // This PONG still counts in `pending_pings`: the new one is that many from now.
            let pongs = self.pending_pings - 1;
            self.drains_awaiting_pong
                .extend(again.into_iter().map(|(sid, rounds)| (sid, pongs, rounds)));
        }
    }
}

/// Round trips a drain waits for (see `confirm_drains`).
const DRAIN_ROUNDS: u8 = 2;
"####;

const DRAIN_AFTER_PONG_CLIENT: &str = r####"
// Added by patient-management's build (local/xtask/src/patches.rs).
impl Client {
    /// Drains every subscription whose subject starts with `prefix`: the server stops routing
    /// to them, the messages it routed before are still delivered, and then their streams end.
    pub async fn drain_subscriptions(&self, prefix: &str) -> Result<(), DrainError> {
        self.sender
            .send(Command::DrainSubjects {
                prefix: prefix.to_owned(),
            })
            .await?;
        Ok(())
    }
}
"####;

fn host_edits(crate_dir: &Path) -> Result<()> {
    unavailable_on_component_failure(crate_dir)?;
    update_in_place(crate_dir)?;
    started_event_names_the_reference(crate_dir)?;
    one_wrpc_client_per_target(crate_dir)?;
    drained_stop(crate_dir)?;
    // After `drained_stop`: four of its anchors are that edit's output.
    local_links(crate_dir)?;
    peer_addr_header(crate_dir)
}

/// Every request the built-in HTTP server hands a component carries the IP of the connection it
/// came on in `x-pm-peer-addr`; `insert` replaces whatever a client sent under that name, so it
/// cannot be forged. The service is wrapped per connection (it was made once per listener) to
/// hold that connection's address.
fn peer_addr_header(crate_dir: &Path) -> Result<()> {
    let file = "src/wasmbus/providers/http_server/mod.rs";
    replace_once(
        crate_dir,
        file,
        "    let svc = hyper::service::service_fn(svc);\n",
        "",
    )?;
    replace_once(
        crate_dir,
        file,
        "            let stream = match listener.accept().await {\n                Ok((stream, _)) => stream,\n",
        "            let (stream, peer) = match listener.accept().await {\n                Ok((stream, peer)) => (stream, peer_header(peer)),\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "srv.serve_connection(TokioIo::new(stream), svc).await",
        "srv.serve_connection(\n                        TokioIo::new(stream),\n                        \
         hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {\n                            \
         req.headers_mut().insert(PEER_ADDR, peer.clone());\n                            \
         svc(req)\n                        }),\n                    ).await",
    )?;
    append(crate_dir, file, PEER_ADDR_HEADER)
}

const PEER_ADDR_HEADER: &str = r#"
// Added by patient-management's build (local/xtask/src/patches.rs, `peer_addr_header`).
const PEER_ADDR: http::HeaderName = http::HeaderName::from_static("x-pm-peer-addr");

/// The peer's IP as a header value (an IPv4 peer on an IPv6 socket as plain IPv4).
fn peer_header(peer: SocketAddr) -> http::HeaderValue {
    http::HeaderValue::from_str(&peer.ip().to_canonical().to_string())
        .expect("an IP address is a valid header value")
}
"#;

/// Stopping a component's exports (scale to 0, a rescale, an in-place update) aborted the task
/// that read its invocation subscriptions, dropping the calls NATS had routed to them and those
/// accepted but still waiting for an instance: their callers waited 15 s for a 503. The host now
/// drains the component's wRPC server (the transport edit `drain_serving`): the subscriptions
/// stop, every call routed to them is still accepted and runs, and the task ends by itself when
/// the last one was taken. The calls already running were never aborted (each has its own task).
fn drained_stop(crate_dir: &Path) -> Result<()> {
    let file = "src/wasmbus/mod.rs";
    replace_once(
        crate_dir,
        file,
        "    handler: Handler,\n    exports: JoinHandle<()>,\n",
        "    handler: Handler,\n    exports: JoinHandle<()>,\n    \
         /// The wRPC server of `exports`: draining it ends them without losing a call.\n    \
         serving: wrpc_transport_nats::Client,\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "                &WrpcServer {\n                    nats,\n",
        "                &WrpcServer {\n                    nats: nats.clone(),\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "            handler,\n            events: events_tx,\n",
        "            handler,\n            serving: nats,\n            events: events_tx,\n",
    )?;
    // The exports loop ends with its streams (it spun on `None` before, but was always aborted).
    replace_once(
        crate_dir,
        file,
        "                            if let Some(fut) = exports.next().await {\n",
        "                            let Some(fut) = exports.next().await else {\n                                \
         debug!(\"every export drained\");\n                                break;\n                            };\n                            {\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "        component.exports.abort();\n",
        "        component.serving.drain_serving();\n",
    )
}

/// Every call a component made over a link built a new wRPC client: a NATS subscription on a
/// fresh inbox (SUB, and UNSUB when the call ended, each a change to the server's interest
/// graph) and a routing task of its own. A client routes any number of concurrent calls, so the
/// host now keeps one per target for its lifetime.
fn one_wrpc_client_per_target(crate_dir: &Path) -> Result<()> {
    let file = "src/wasmbus/handler.rs";
    replace_once(
        crate_dir,
        file,
        "        let nats = wrpc_transport_nats::Client::new(\n            Arc::clone(&self.nats),\n            format!(\"{}.{id}\", &self.lattice),\n            None,\n        )\n        .await\n",
        "        let nats = shared_wrpc_client(&self.nats, format!(\"{}.{id}\", &self.lattice))\n        .await\n",
    )?;
    append(crate_dir, file, SHARED_WRPC_CLIENT)
}

const SHARED_WRPC_CLIENT: &str = r####"

/// Added by patient-management's build (local/xtask/src/patches.rs): the wRPC client for the
/// target `prefix` (`<lattice>.<target id>`), made on its first call and kept, so a call costs
/// no subscription of its own. Keyed by prefix alone: a host process has one RPC connection.
async fn shared_wrpc_client(
    nats: &Arc<async_nats::Client>,
    prefix: String,
) -> anyhow::Result<wrpc_transport_nats::Client> {
    static CLIENTS: std::sync::LazyLock<
        std::sync::Mutex<HashMap<String, wrpc_transport_nats::Client>>,
    > = std::sync::LazyLock::new(Default::default);
    let known = CLIENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&prefix)
        .cloned();
    if let Some(client) = known {
        return Ok(client);
    }
    let client = wrpc_transport_nats::Client::new(Arc::clone(nats), prefix.clone(), None).await?;
    // Two first calls may race; the first client stored wins and the other is dropped.
    Ok(CLIENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(prefix)
        .or_insert(client)
        .clone())
}
"####;

/// A call from one component to another on the same host went out to NATS and back: three
/// messages through the NATS server, each crossing two processes over loopback, and a routing
/// task on each side (measured: one such hop cost 190-220 µs of the 2-core machine, more than a
/// whole trivial request through the host, and a cached get makes two of them, issue 22). The
/// edit serves every component's exports on an in-memory wRPC server (wrpc-transport's framed
/// protocol over two `tokio::io::duplex` pipes per call) beside NATS, in one stream, so a local
/// call takes the same export loop: policy check, instance limit, execution limit and metrics.
/// A process-wide registry maps `<lattice>.<component id>` to the instance serving now; a new
/// instance (scale or in-place update) replaces the entry before the old one is stopped, and the
/// old server's streams end once the calls queued on them were taken (as `drained_stop` does for
/// NATS). A call goes local when the target has an entry and still serves the function, and over
/// NATS as before otherwise (providers, components on other hosts, a component being stopped).
/// `set_local_calls(false)` sends every call over NATS (the launcher's `--local-calls`, and its
/// SIGUSR1/SIGUSR2 at run time); `link_calls()` counts calls by target and path.
///
/// Upstream's answer (wasmCloud#4637, 2025, and wasmCloud 2's wash-runtime, which links one
/// component's imports to another's exports in the wasmtime linker: nanoseconds a call, no wRPC
/// encoding) is a rewrite of wasmcloud-runtime's linking, not an edit; this keeps wRPC's framing
/// and the host's export loop and removes only the trip through NATS (measured: a local hop
/// 131-137 µs of machine time against 231-239 µs over NATS, bench/README.md).
fn local_links(crate_dir: &Path) -> Result<()> {
    let handler = "src/wasmbus/handler.rs";
    replace_once(
        crate_dir,
        handler,
        "    type Outgoing = <wrpc_transport_nats::Client as wrpc_transport::Invoke>::Outgoing;\n    type Incoming = <wrpc_transport_nats::Client as wrpc_transport::Invoke>::Incoming;\n",
        "    type Outgoing = LinkStream<\n        <wrpc_transport_nats::Client as wrpc_transport::Invoke>::Outgoing,\n        wrpc_transport::frame::Outgoing,\n    >;\n    type Incoming = LinkStream<\n        <wrpc_transport_nats::Client as wrpc_transport::Invoke>::Incoming,\n        wrpc_transport::frame::Incoming,\n    >;\n",
    )?;
    replace_once(
        crate_dir,
        handler,
        "        let nats = shared_wrpc_client(&self.nats, format!(\"{}.{id}\", &self.lattice))\n        .await\n        .map_err(Error::Handler)?;\n        let (tx, rx) = nats\n            .timeout(self.invocation_timeout)\n            .invoke(Some(headers), instance, func, params, paths)\n            .await\n            .map_err(Error::Handler)?;\n        Ok((tx, rx))\n",
        LOCAL_FIRST_INVOKE,
    )?;
    append(crate_dir, handler, LOCAL_LINKS)?;

    let file = "src/wasmbus/mod.rs";
    replace_once(
        crate_dir,
        file,
        "pub use self::host_config::Host as HostConfig;\n",
        "pub use self::host_config::Host as HostConfig;\npub use self::handler::{link_calls, set_local_calls};\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "struct WrpcServer {\n    nats: wrpc_transport_nats::Client,\n",
        "struct WrpcServer {\n    nats: wrpc_transport_nats::Client,\n    \
         /// Serves the same exports to callers on this host, in memory.\n    \
         local: Arc<handler::LocalServer>,\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "    type Outgoing = <wrpc_transport_nats::Client as wrpc_transport::Serve>::Outgoing;\n    type Incoming = <wrpc_transport_nats::Client as wrpc_transport::Serve>::Incoming;\n",
        "    type Outgoing = handler::LinkStream<\n        <wrpc_transport_nats::Client as wrpc_transport::Serve>::Outgoing,\n        wrpc_transport::frame::Outgoing,\n    >;\n    type Incoming = handler::LinkStream<\n        <wrpc_transport_nats::Client as wrpc_transport::Serve>::Incoming,\n        wrpc_transport::frame::Incoming,\n    >;\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "        let invocations = self.nats.serve(instance, func, paths).await?;\n",
        SERVE_BOTH,
    )?;
    replace_once(
        crate_dir,
        file,
        "        let exports = component\n            .serve_wrpc(\n",
        "        let local = Arc::new(handler::LocalServer::new());\n        let exports = component\n            .serve_wrpc(\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "                &WrpcServer {\n                    nats: nats.clone(),\n",
        "                &WrpcServer {\n                    nats: nats.clone(),\n                    local: Arc::clone(&local),\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "        let permits = Arc::new(Semaphore::new(\n            usize::from(max_instances).min(Semaphore::MAX_PERMITS),\n        ));\n",
        "        let permits = Arc::new(Semaphore::new(\n            usize::from(max_instances).min(Semaphore::MAX_PERMITS),\n        ));\n        \
         // Takes this host's calls from now on, before any older instance of it is stopped.\n        \
         let serving_locally = Arc::downgrade(&local);\n        \
         handler::serve_locally(\n            \
         format!(\"{}.{id}\", &self.host_config.lattice),\n            \
         local,\n            \
         Arc::clone(&permits),\n        );\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "    serving: wrpc_transport_nats::Client,\n",
        "    serving: wrpc_transport_nats::Client,\n    \
         /// The in-memory server of `exports` (the host's registry holds it while it takes calls).\n    \
         serving_locally: std::sync::Weak<handler::LocalServer>,\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "            serving: nats,\n",
        "            serving: nats,\n            serving_locally,\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "        component.serving.drain_serving();\n",
        "        handler::stop_serving_locally(\n            \
         &format!(\"{}.{}\", self.host_config.lattice, component.id),\n            \
         &component.serving_locally,\n        );\n        component.serving.drain_serving();\n",
    )
}

const LOCAL_FIRST_INVOKE: &str = r####"        let prefix = format!("{}.{id}", &self.lattice);
        let paths = paths.as_ref();
        if let Some(local) = local_server(&prefix) {
            // The target runs on this host: the call goes through memory, not NATS.
            let local = tokio::time::timeout(
                self.invocation_timeout,
                invoke_local(&local, headers.clone(), instance, func, params.clone(), paths),
            )
            .await
            .context("invocation timed out")
            .and_then(|invoked| invoked)
            .map_err(Error::Handler)?;
            if let Some((tx, rx)) = local {
                count_link_call(id, "local");
                return Ok((LinkStream::Local(tx), LinkStream::Local(rx)));
            }
        }
        let nats = shared_wrpc_client(&self.nats, prefix)
        .await
        .map_err(Error::Handler)?;
        let (tx, rx) = nats
            .timeout(self.invocation_timeout)
            .invoke(Some(headers), instance, func, params, paths)
            .await
            .map_err(Error::Handler)?;
        count_link_call(id, "nats");
        Ok((LinkStream::Nats(tx), LinkStream::Nats(rx)))
"####;

const SERVE_BOTH: &str = r####"        let paths: Arc<[Box<[Option<usize>]>]> = paths.into();
        let nats = self.nats.serve(instance, func, Arc::clone(&paths)).await?;
        let local = self.local.serve(instance, func, paths).await?;
        // One stream: calls from this host (in memory) get the same policy check, instance limit
        // and metrics as those over NATS.
        let invocations = stream::select(
            nats.map_ok(|(cx, tx, rx)| {
                (cx, handler::LinkStream::Nats(tx), handler::LinkStream::Nats(rx))
            }),
            local.map_ok(|(cx, tx, rx)| {
                (cx, handler::LinkStream::Local(tx), handler::LinkStream::Local(rx))
            }),
        );
"####;

const LOCAL_LINKS: &str = r####"

// Added by patient-management's build (local/xtask/src/patches.rs, `local_links`).

/// The in-memory wRPC server of a component's exports: a call from a component on this host is
/// framed over two in-memory pipes instead of going through NATS.
pub type LocalServer = wrpc_transport::frame::Server<
    Option<async_nats::HeaderMap>,
    tokio::io::DuplexStream,
    tokio::io::DuplexStream,
>;

/// A component's in-memory server and its instance permits (`max_instances`).
type LocalEntry = (Arc<LocalServer>, Arc<tokio::sync::Semaphore>);

/// The servers of the components this host runs, by wRPC prefix (`<lattice>.<component id>`).
/// The registry holds the only strong reference: dropping an entry ends that server's streams.
static LOCAL_SERVERS: std::sync::LazyLock<std::sync::RwLock<HashMap<String, LocalEntry>>> =
    std::sync::LazyLock::new(Default::default);

/// Whether calls to components on this host go through memory (on unless turned off).
static LOCAL_CALLS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Calls this host's components made over links, by (target id, "local" or "nats").
static LINK_CALLS: std::sync::LazyLock<std::sync::Mutex<HashMap<(String, &'static str), u64>>> =
    std::sync::LazyLock::new(Default::default);

/// Bytes a pipe buffers before its writer waits (allocated only as written): a call's parameters
/// are written before the callee's export loop starts reading them.
const LOCAL_PIPE_CAPACITY: usize = 16 << 20;

/// Turns calls through memory to components on this host on or off (off: every call goes over
/// NATS, as without this edit).
pub fn set_local_calls(on: bool) {
    LOCAL_CALLS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Calls made over links since the host started: (target id, "local" or "nats", count).
pub fn link_calls() -> Vec<(String, &'static str, u64)> {
    let calls = LINK_CALLS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    calls
        .iter()
        .map(|((target, path), count)| (target.clone(), *path, *count))
        .collect()
}

fn count_link_call(target: &str, path: &'static str) {
    let mut calls = LINK_CALLS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match calls.get_mut(&(target.to_string(), path)) {
        Some(count) => *count += 1,
        None => {
            calls.insert((target.to_string(), path), 1);
        }
    }
}

/// `server` takes this host's calls to `prefix` from now on, while one of `permits` is free; the
/// server it replaces (an older instance of the component) has its export streams end once the
/// calls it accepted are taken.
pub fn serve_locally(prefix: String, server: Arc<LocalServer>, permits: Arc<tokio::sync::Semaphore>) {
    LOCAL_SERVERS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(prefix, (server, permits));
}

/// Stops routing this host's calls to `server`, unless a newer instance already replaced it.
pub fn stop_serving_locally(prefix: &str, server: &std::sync::Weak<LocalServer>) {
    let mut servers = LOCAL_SERVERS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if servers
        .get(prefix)
        .is_some_and(|(current, _)| core::ptr::eq(Arc::as_ptr(current), server.as_ptr()))
    {
        servers.remove(prefix);
    }
}

/// The local server for a call to `prefix`, when there is one with a free instance: with every
/// instance on this host busy (or held by calls that wait on something), the call goes over
/// NATS, where the component's instances on other hosts take it too, as before this edit.
/// (Measured: with every call local, the failover and machines tests failed: after a host was
/// lost, requests on a survivor waited the whole 10 s call timeout for its own few instances of
/// patients or analytics, while over NATS they had been spread over every host's instances. With
/// this rule: 0 of 1,056 requests failed while the host was lost.)
fn local_server(prefix: &str) -> Option<Arc<LocalServer>> {
    if !LOCAL_CALLS.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    LOCAL_SERVERS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(prefix)
        .filter(|(_, permits)| permits.available_permits() > 0)
        .map(|(server, _)| Arc::clone(server))
}

/// Calls `instance.func` on the component `local` serves; `None` when it does not serve that
/// function (or no longer serves at all), for NATS to decide as before.
async fn invoke_local<P>(
    local: &LocalServer,
    headers: async_nats::HeaderMap,
    instance: &str,
    func: &str,
    params: Bytes,
    paths: &[P],
) -> anyhow::Result<Option<(wrpc_transport::frame::Outgoing, wrpc_transport::frame::Incoming)>>
where
    P: AsRef<[Option<usize>]> + Send + Sync,
{
    let (caller_tx, callee_rx) = tokio::io::duplex(LOCAL_PIPE_CAPACITY);
    let (callee_tx, caller_rx) = tokio::io::duplex(LOCAL_PIPE_CAPACITY);
    let pipe = LocalPipe(std::sync::Mutex::new(Some((
        Some(headers),
        callee_tx,
        callee_rx,
    ))));
    // The caller writes the header and parameters while the server reads the header.
    let (invoked, accepted) = futures::future::join(
        wrpc_transport::frame::invoke(caller_tx, caller_rx, instance, func, params, paths),
        local.accept(pipe),
    )
    .await;
    match accepted {
        Ok(()) => invoked.map(Some),
        Err(
            wrpc_transport::frame::AcceptError::UnhandledFunction { .. }
            | wrpc_transport::frame::AcceptError::Send(..),
        ) => Ok(None),
        Err(err) => Err(anyhow!("the local call was not accepted: {err}")),
    }
}

/// One call's pipes, accepted by the frame server like a connection.
struct LocalPipe(
    std::sync::Mutex<
        Option<(
            Option<async_nats::HeaderMap>,
            tokio::io::DuplexStream,
            tokio::io::DuplexStream,
        )>,
    >,
);

impl wrpc_transport::frame::Accept for LocalPipe {
    type Context = Option<async_nats::HeaderMap>;
    type Outgoing = tokio::io::DuplexStream;
    type Incoming = tokio::io::DuplexStream;

    async fn accept(&self) -> std::io::Result<(Self::Context, Self::Outgoing, Self::Incoming)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| std::io::ErrorKind::NotConnected.into())
    }
}

/// A call's byte stream: over NATS, or in memory to a component on this host.
pub enum LinkStream<N, L> {
    Nats(N),
    Local(L),
}

impl<N, L> wrpc_transport::Index<Self> for LinkStream<N, L>
where
    N: wrpc_transport::Index<N>,
    L: wrpc_transport::Index<L>,
{
    fn index(&self, path: &[usize]) -> anyhow::Result<Self> {
        match self {
            Self::Nats(stream) => wrpc_transport::Index::<N>::index(stream, path).map(Self::Nats),
            Self::Local(stream) => wrpc_transport::Index::<L>::index(stream, path).map(Self::Local),
        }
    }
}

impl<N, L> tokio::io::AsyncRead for LinkStream<N, L>
where
    N: tokio::io::AsyncRead + Unpin,
    L: tokio::io::AsyncRead + Unpin,
{
    fn poll_read(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> core::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Nats(stream) => core::pin::Pin::new(stream).poll_read(cx, buf),
            Self::Local(stream) => core::pin::Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl<N, L> tokio::io::AsyncWrite for LinkStream<N, L>
where
    N: tokio::io::AsyncWrite + Unpin,
    L: tokio::io::AsyncWrite + Unpin,
{
    fn poll_write(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
        buf: &[u8],
    ) -> core::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Nats(stream) => core::pin::Pin::new(stream).poll_write(cx, buf),
            Self::Local(stream) => core::pin::Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Nats(stream) => core::pin::Pin::new(stream).poll_flush(cx),
            Self::Local(stream) => core::pin::Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Nats(stream) => core::pin::Pin::new(stream).poll_shutdown(cx),
            Self::Local(stream) => core::pin::Pin::new(stream).poll_shutdown(cx),
        }
    }
}
"####;

/// The `provider_started` event named a `file://` provider by its bare path, never the reference
/// wadm asked for, so wadm kept waiting for the event it expected and ignored the provider's
/// other events for 30 s (a provider stopped meanwhile was started again only after that).
fn started_event_names_the_reference(crate_dir: &Path) -> Result<()> {
    replace_once(
        crate_dir,
        "src/wasmbus/mod.rs",
        "        trace!(provider_ref, provider_id, \"start provider task\");\n",
        "        trace!(provider_ref, provider_id, \"start provider task\");\n        \
         let requested_ref = provider_ref.to_string();\n",
    )?;
    replace_once(
        crate_dir,
        "src/wasmbus/mod.rs",
        "                    host_id,\n                    &provider_ref,\n                    provider_id,\n",
        "                    host_id,\n                    &requested_ref,\n                    provider_id,\n",
    )
}

fn update_in_place(crate_dir: &Path) -> Result<()> {
    // A scale to another image reference updates the component afterwards, in place.
    replace_once(
        crate_dir,
        "src/wasmbus/ctl.rs",
        "let allow_update = request.allow_update();",
        "let allow_update = { let _ = request.allow_update(); true };",
    )?;
    let file = "src/wasmbus/mod.rs";
    // Rescaling keeps the image the instances run; the update that follows changes it (else the
    // new reference is recorded against the old code and the update finds nothing to do).
    replace_once(
        crate_dir,
        file,
        "                        .instantiate_component(\n                            annotations,\n                            Arc::clone(&component_ref),\n",
        "                        .instantiate_component(\n                            annotations,\n                            Arc::clone(&component.image_reference),\n",
    )?;
    // One update at a time per host: two at once (wadm's and an operator's) would both replace
    // the same instances and leave one set serving wRPC forever; the second now finds the image
    // already in place and does nothing.
    replace_once(
        crate_dir,
        file,
        "        // NOTE: This block is specifically scoped to ensure we drop the read lock on `self.components` before\n",
        "        static UPDATES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());\n        let _one_at_a_time = UPDATES.lock().await;\n        // NOTE: This block is specifically scoped to ensure we drop the read lock on `self.components` before\n",
    )?;
    // The update keeps the annotations it was not given ...
    replace_once(
        crate_dir,
        file,
        "            let annotations = annotations.unwrap_or_default().into_iter().collect();\n",
        "            let annotations: Annotations = annotations\n                .map(|a| a.into_iter().collect())\n                .unwrap_or_else(|| existing_component.annotations.clone());\n",
    )?;
    // ... stops the old component's exports (in-flight invocations finish: each runs in its own
    // task), not the new one's ...
    replace_once(
        crate_dir,
        file,
        "            self.stop_component(&component, host_id)\n                .await\n                .context(\"failed to stop old component\")?;\n",
        "            self.stop_component(existing_component, host_id)\n                .await\n                .context(\"failed to stop old component\")?;\n",
    )?;
    // ... and does not report the new instances as scaled to 0.
    replace_once(
        crate_dir,
        file,
        "            self.publish_event(\n                \"component_scaled\",\n                event::component_scaled(\n                    component.claims(),\n                    &component.annotations,\n                    host_id,\n                    0_usize,\n                    &component.image_reference,\n                    &component.id,\n                ),\n            )\n            .await?;\n",
        "",
    )
}

/// wasmcloud-runtime keeps only the first 10 KiB of a pooled linear memory resident and gives
/// the rest back with `madvise` when an instance ends, i.e. after every invocation: each one
/// then page-faults its stack and heap back in, and each `madvise` interrupts the host's other
/// threads to flush their TLBs (measured: about 15% of the host's CPU on a cached get). Where
/// Linux has the `PAGEMAP_SCAN` ioctl (6.7+), wasmtime can find the pages an instance dirtied
/// and reset just those in place, so the edit keeps up to 4 MiB resident there; elsewhere a
/// large resident window would mean a 4 MiB `memset` per invocation, so it stays as it was.
fn resident_instance_memory(crate_dir: &Path) -> Result<()> {
    let file = "src/runtime.rs";
    replace_once(
        crate_dir,
        file,
        "        #[allow(clippy::cast_possible_truncation)]\n        pooling_config\n",
        "        let (memory_resident, table_resident) =\n            if PoolingAllocationConfig::is_pagemap_scan_available() {\n                (4 << 20, 1 << 20)\n            } else {\n                (10 * 1024, 10 * 1024)\n            };\n        #[allow(clippy::cast_possible_truncation)]\n        pooling_config\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "            .linear_memory_keep_resident(10 * 1024)\n            .table_keep_resident(10 * 1024);\n",
        "            .linear_memory_keep_resident(memory_resident)\n            .table_keep_resident(table_resident)\n            .pagemap_scan(wasmtime::Enabled::Auto);\n",
    )
}

fn runtime_edits(crate_dir: &Path) -> Result<()> {
    resident_instance_memory(crate_dir)?;
    call_timeout(crate_dir)?;
    keyvalue_errors_are_values(crate_dir)
}

/// wasmcloud-runtime 0.12.0 turns an error the key-value provider answers (Redis down, say) into
/// a trap of the calling component for seven of the nine `wasi:keyvalue` functions (`get-many`,
/// `set-many`, `delete-many`, `set`, `delete`, `exists`, `list-keys`); only `get` and
/// `increment` hand it over as the `error` their WIT result declares. Measured here (issue 17):
/// with Redis hung, every read of patients trapped in its cache lookup (`get-many`) and the
/// gateway answered 503, where the cache is meant to fail open. The edit returns the error as a
/// value, as `get` does.
fn keyvalue_errors_are_values(crate_dir: &Path) -> Result<()> {
    replace_exactly(
        crate_dir,
        "src/component/keyvalue.rs",
        "            Err(err) => Err(err.into()),\n",
        "            Err(err) => Ok(Err(err.into())),\n",
        7,
    )
}

/// wasmcloud-runtime 0.12.0 bounds each call a component makes (over wRPC, to a provider or
/// another component) by the component's whole execution time: 10 minutes by default, and the
/// same deadline as the caller's own, so the caller is stopped at the moment its call fails and
/// never sees the error. The edit bounds calls by `PM_CALL_TIMEOUT_MS` (the host launcher's
/// setting) when it is set and shorter, so a call that gets no answer in time returns to the
/// caller, which can still answer: with `result<_, wrpc:rpc/error.error>` as its result type the
/// caller receives the failure as that error (wrpc-runtime-wasmtime's polyfill), not a trap.
fn call_timeout(crate_dir: &Path) -> Result<()> {
    let file = "src/component/mod.rs";
    replace_once(
        crate_dir,
        file,
        "                timeout: max_execution_time,\n",
        "                timeout: call_timeout(max_execution_time),\n",
    )?;
    append(crate_dir, file, CALL_TIMEOUT)
}

const CALL_TIMEOUT: &str = r####"

/// Added by patient-management's build (local/xtask/src/patches.rs): the bound of one call a
/// component makes, `PM_CALL_TIMEOUT_MS`, read once; never longer than the component's own
/// execution time.
fn call_timeout(max_execution_time: Duration) -> Duration {
    static CONFIGURED: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let configured = CONFIGURED.get_or_init(|| {
        std::env::var("PM_CALL_TIMEOUT_MS")
            .ok()
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
    });
    configured.map_or(max_execution_time, |bound| bound.min(max_execution_time))
}
"####;

fn wadm_edits(crate_dir: &Path) -> Result<()> {
    soft_spreads(crate_dir)?;
    let file = "src/scaler/spreadscaler/mod.rs";
    // The image is not part of the scaler's identity: a new image is the same scaler.
    replace_once(
        crate_dir,
        file,
        "            &component_id,\n            &component_reference,\n        ];\n",
        "            &component_id,\n        ];\n",
    )?;
    // Instances at the right count but on another image get the manifest's image, host by host.
    replace_once(
        crate_dir,
        file,
        "                        Ordering::Equal => None,\n",
        IMAGE_DRIFT,
    )
}

const IMAGE_DRIFT: &str = r####"                        Ordering::Equal => component
                            .as_ref()
                            .filter(|c| c.reference != self.spread_config.component_reference)
                            .map(|_| {
                                running_components_per_host
                                    .iter()
                                    .map(|(host_id, count)| {
                                        Command::ScaleComponent(ScaleComponent {
                                            component_id: component_id.to_owned(),
                                            reference: self.spread_config.component_reference.to_owned(),
                                            host_id: host_id.to_string(),
                                            count: *count as u32,
                                            model_name: self.spread_config.model_name.to_owned(),
                                            annotations: spreadscaler_annotations(&spread.name, self.id()),
                                            config: self.config.clone(),
                                        })
                                    })
                                    .collect()
                            }),
"####;

fn unavailable_on_component_failure(crate_dir: &Path) -> Result<()> {
    let file = "src/wasmbus/providers/http_server/address.rs";
    let indent = " ".repeat(16);
    replace_once(
        crate_dir,
        file,
        &format!("{indent}async move {{\n{indent}    let component = {{"),
        &format!("{indent}unavailable_on_error(async move {{\n{indent}    let component = {{"),
    )?;
    replace_once(
        crate_dir,
        file,
        &format!("{indent}.instrument(info_span!(\"handle\"))\n"),
        &format!("{indent}.instrument(info_span!(\"handle\")))\n"),
    )?;
    append(crate_dir, file, UNAVAILABLE_ON_ERROR)
}

const UNAVAILABLE_ON_ERROR: &str = r####"

/// A request not answered within this long gets a 503: a component's call to another whose host
/// vanished mid-call never returns (wRPC's timeout covers only the start of a call). Longer than
/// two calls' bound (`PM_CALL_TIMEOUT_MS`, 10 s): the gateway makes two in a row (the service,
/// then the audit trail), and must outlive both to answer for either; shorter than the
/// execution limit (30 s).
const REQUEST_BUDGET: std::time::Duration = std::time::Duration::from_secs(25);

/// Added by patient-management's build (local/xtask/src/patches.rs): a component that fails to
/// answer, or not in time, gets the client a 503 problem+json instead of a dropped connection or
/// a wait without end.
async fn unavailable_on_error(
    handled: impl core::future::Future<
        Output = anyhow::Result<http::Response<wasmtime_wasi_http::body::HyperOutgoingBody>>,
    >,
) -> anyhow::Result<http::Response<wasmtime_wasi_http::body::HyperOutgoingBody>> {
    let error = match tokio::time::timeout(REQUEST_BUDGET, handled).await {
        Ok(Ok(response)) => return Ok(response),
        Ok(Err(error)) => error,
        Err(_) => anyhow::anyhow!("no answer within {REQUEST_BUDGET:?}"),
    };
    tracing::warn!(error = %format!("{error:#}"), "the component did not answer; replying 503");
    let problem: &'static [u8] = br#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"the platform could not answer this request now; retry later"}"#;
    let body: wasmtime_wasi_http::body::HyperOutgoingBody =
        http_body_util::Full::new(bytes::Bytes::from_static(problem))
            .map_err(|never| match never {})
            .boxed();
    Ok(http::Response::builder()
        .status(http::StatusCode::SERVICE_UNAVAILABLE)
        .header(http::header::CONTENT_TYPE, "application/problem+json")
        .header(http::header::RETRY_AFTER, "1")
        .body(body)?)
}
"####;

fn soft_spreads(crate_dir: &Path) -> Result<()> {
    let file = "src/scaler/spreadscaler/mod.rs";
    replace_once(
        crate_dir,
        file,
        "        let ineligible_hosts = compute_ineligible_hosts(\n            &hosts,\n            self.spread_requirements\n",
        "        let spread_requirements =\n            live_spread_requirements(&self.spread_config.spread_config, &hosts, &self.spread_requirements);\n        let ineligible_hosts = compute_ineligible_hosts(\n            &hosts,\n            spread_requirements\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "        let commands = self\n            .spread_requirements\n            .iter()\n",
        "        let commands = spread_requirements\n            .iter()\n",
    )?;
    replace_once(
        crate_dir,
        file,
        "detect_spread_requirement_conflicts(\n            &self.spread_requirements,\n",
        "detect_spread_requirement_conflicts(\n            &spread_requirements,\n",
    )?;
    append(crate_dir, file, LIVE_SPREAD_REQUIREMENTS)
}

const LIVE_SPREAD_REQUIREMENTS: &str = r####"

/// Added by patient-management's build (local/xtask/src/patches.rs): the spreads that have at
/// least one live host share all the instances by their weights; with every spread live (or
/// none) the division is the manifest's own.
fn live_spread_requirements(
    config: &SpreadScalerProperty,
    hosts: &HashMap<String, Host>,
    planned: &[(Spread, usize)],
) -> Vec<(Spread, usize)> {
    let live: Vec<Spread> = config
        .spread
        .iter()
        .filter(|spread| !eligible_hosts(hosts, spread).is_empty())
        .cloned()
        .collect();
    if live.is_empty() || live.len() == config.spread.len() {
        return planned.to_vec();
    }
    compute_spread(&SpreadScalerProperty {
        instances: config.instances,
        spread: live,
    })
}
"####;

/// A writable copy of the released crate `krate` `version` (a binary crate, which a manifest
/// cannot depend on: `cargo info` fetches it), made once.
pub fn released_crate(krate: &str, version: &str) -> Result<PathBuf> {
    let root = paths::cache().join("patches");
    let dir = root.join(format!("{krate}-{version}-release"));
    if dir.join(".copied").exists() {
        return Ok(dir);
    }
    let work = root.join("fetch");
    fs::create_dir_all(&work)?;
    run(Command::new("cargo")
        .args(["info", &format!("{krate}@{version}")])
        .current_dir(&work))
    .with_context(|| format!("fetching {krate} {version}"))?;
    // `cargo info` unpacks it where cargo unpacks every registry crate.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let registry = fs::read_dir(cargo_home.join("registry/src"))?
        .filter_map(|index| index.ok())
        .map(|index| index.path().join(format!("{krate}-{version}")))
        .find(|dir| dir.join("Cargo.toml").exists())
        .with_context(|| format!("{krate} {version} is not in cargo's registry sources"))?;
    let staging = root.join(format!(".{krate}-{version}-release.partial"));
    let _ = fs::remove_dir_all(&staging);
    copy_dir(&registry, &staging)?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&staging, &dir)?;
    fs::write(dir.join(".copied"), version)?;
    Ok(dir)
}

/// The storage task ended with `Error::UnableToSend` when the oneshot of a request whose
/// requester had gone could not take the answer; the channel's other end then failed every
/// request (and `From<ServiceError> for UpdateError` panics on that error). A requester that
/// left does not want the answer: drop it and take the next request.
fn storage_edits(crate_dir: &Path) -> Result<()> {
    storage_outlives_requesters(crate_dir)?;
    groups_described(crate_dir)
}

/// The storage task ended for good when a requester had gone before its answer (a client that
/// disconnected mid-request, as every client does while the broker restarts under load), and
/// also when one request failed (`?` on its result): every later request then failed, and
/// fetching a consumer group hit an `unreachable!()`. Now an answer nobody waits for is dropped,
/// a failed request is logged (its requester sees its answer channel closed), and the storage
/// serves on.
fn storage_outlives_requesters(crate_dir: &Path) -> Result<()> {
    replace_once(
        crate_dir,
        "src/service.rs",
        r#"                    .and_then(|response| {
                        tx.send(response).map_err(|_unsent| Error::UnableToSend)
                    })?"#,
        r#"                    .map_or_else(
                        |err| error!(?err, "a storage request failed; the storage serves on"),
                        |response| {
                            if tx.send(response).is_err() {
                                debug!("the requester left before its answer");
                            }
                        },
                    )"#,
    )
}

/// The SQLite storage keeps a consumer group's detail as JSON text, and `update_group` reads it
/// back parsed, but `describe_groups` wrapped the text in a JSON string and then failed to
/// decode a group from it ("invalid type: string"): every DescribeGroups of an existing group
/// failed (measured: rdkafka's group listing got a transport failure each time), and with the
/// error above that also stopped the storage. The edit parses the text.
fn groups_described(crate_dir: &Path) -> Result<()> {
    replace_once(
        crate_dir,
        "src/lite.rs",
        "                        .map_err(Error::from)\n                        .map(serde_json::Value::from)\n                        .inspect_err(|err| error!(?err, group_id))?;",
        "                        .map_err(Error::from)\n                        .and_then(|value| {\n                            serde_json::from_str::<serde_json::Value>(value).map_err(Error::from)\n                        })\n                        .inspect_err(|err| error!(?err, group_id))?;",
    )
}

/// Where cargo unpacked the released crate `krate` `version`, fetched through a throwaway
/// manifest in `work`.
pub fn registry_source(work: &Path, krate: &str, version: &str) -> Result<PathBuf> {
    fs::create_dir_all(work.join("src"))?;
    fs::write(
        work.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fetch-{krate}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\n{krate} = \"={version}\"\n\n[workspace]\n"
        ),
    )?;
    fs::write(work.join("src/lib.rs"), "")?;
    let metadata = run(Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(work.join("Cargo.toml")))
    .with_context(|| format!("cargo metadata for {krate}"))?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == krate && p["version"] == version)
        .with_context(|| format!("{krate} is not in the fetched metadata"))?;
    let path = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
    Ok(path
        .parent()
        .with_context(|| format!("{krate} manifest has no directory"))?
        .to_path_buf())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
