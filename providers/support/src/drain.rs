//! Serving a provider's exports so that stopping it loses no call.
//!
//! The SDK's `serve_provider_exports` keeps taking calls while the provider shuts down and
//! drops the calls in progress when the process exits, so every restart failed some requests.
//! Here, when the host asks the provider to stop:
//! 1. its invocation subscriptions are drained, so NATS hands new calls to the provider's other
//!    instances (every host runs one), or, on a one-host lattice, refuses them at once. A drain,
//!    not a plain unsubscribe: the calls NATS routed here before it took the unsubscribe are
//!    still on their way, and the subscriptions last until the server confirmed it (async-nats
//!    needs a fix for that, local/xtask/src/patches.rs), so those calls are taken too;
//! 2. the calls it took run to the end; the drain and the calls have [`DRAIN_BOUND`];
//! 3. only then does the provider close its pools and connections and answer the host.
//!
//! The host gives the provider `provider_shutdown_delay` (the launcher sets it above the bound)
//! before it kills the process.
//!
//! While it serves, the provider also answers `pm.<lattice>.serving.<provider id>.<host id>`
//! with its pid and start time, so `cargo xtask provider restart` can tell when the restarted
//! instance (another answer) takes calls, before it stops the next host's.
use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use futures::{stream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use wasmcloud_provider_sdk::provider::{InvocationStreams, WrpcClient};
use wasmcloud_provider_sdk::{get_connection, Provider};

/// How long the drain and the calls taken may run on after the host asked the provider to stop.
pub const DRAIN_BOUND: Duration = Duration::from_secs(5);

/// The subject a serving provider instance answers on (`cargo xtask provider restart` asks it).
fn serving_subject(lattice: &str, provider_id: &str, host_id: &str) -> String {
    format!("pm.{lattice}.serving.{provider_id}.{host_id}")
}

/// One provider per process: its `shutdown` and its serve loop meet here.
struct Drain {
    stop: watch::Sender<bool>,
    drained: watch::Sender<bool>,
}

fn drain() -> &'static Drain {
    static DRAIN: LazyLock<Drain> = LazyLock::new(|| Drain {
        stop: watch::Sender::new(false),
        drained: watch::Sender::new(false),
    });
    &DRAIN
}

/// Stops taking calls and returns once the calls in progress finished (or the bound passed).
/// Call it first in `Provider::shutdown`, before closing what those calls use.
pub async fn finish_calls() {
    drain().stop.send_replace(true);
    let mut drained = drain().drained.subscribe();
    // The serve loop bounds the drain itself; this bound only covers a loop that never ran.
    let wait = drained.wait_for(|done| *done);
    if tokio::time::timeout(DRAIN_BOUND + Duration::from_secs(1), wait)
        .await
        .is_err()
    {
        tracing::warn!("the serve loop did not report its drain; closing anyway");
    }
}

/// Runs a provider: the SDK's start-up (host data, links), the missed-link check (links.rs),
/// then `serve`'s exports through [`serve_exports`] until the host stops it.
pub async fn run_provider<P, F, Fut>(provider: P, name: &str, serve: F) -> anyhow::Result<()>
where
    P: Provider + Clone,
    F: FnOnce(&'static WrpcClient, P) -> Fut,
    Fut: Future<Output = anyhow::Result<InvocationStreams>>,
{
    crate::init_logging();
    trust_lattice_ca()?;
    let commands = wasmcloud_provider_sdk::run_provider(provider.clone(), name).await?;
    crate::links::watch();
    let connection = get_connection();
    // One client for the life of the process, which the generated `serve` borrows.
    let wrpc: &'static WrpcClient = Box::leak(Box::new(
        connection
            .get_wrpc_client(connection.provider_key())
            .await?,
    ));
    serve_exports(wrpc, provider, commands, serve).await
}

/// Trusts the lattice's CA (`lattice_ca.rs`) from the provider's config.
fn trust_lattice_ca() -> anyhow::Result<()> {
    crate::lattice_ca::trust(&wasmcloud_provider_sdk::load_host_data()?.config)
}

/// Serves `serve`'s exports until `commands` (the SDK's command loop from `run_provider`) ends,
/// draining as described above when the provider's `shutdown` calls [`finish_calls`].
async fn serve_exports<'a, P, F, Fut>(
    wrpc: &'a WrpcClient,
    provider: P,
    commands: impl Future<Output = ()>,
    serve: F,
) -> anyhow::Result<()>
where
    F: FnOnce(&'a WrpcClient, P) -> Fut,
    Fut: Future<Output = anyhow::Result<InvocationStreams>>,
{
    let streams = serve(wrpc, provider).await?;
    // A provider with no exports (the ticker) takes no calls; its drain ends at once.
    let mut invocations = (!streams.is_empty()).then(|| {
        stream::select_all(
            streams
                .into_iter()
                .map(|(instance, name, calls)| calls.map(move |call| (instance, name, call))),
        )
    });
    let connection = get_connection();
    // Every export is served under this prefix (wrpc-transport-nats' invocation subjects).
    let invocation_prefix = format!(
        "{}.{}.{}.",
        connection.lattice,
        connection.provider_key(),
        wrpc_transport_nats::PROTOCOL
    );
    let subject = serving_subject(
        &connection.lattice,
        connection.provider_key(),
        &connection.host_id,
    );
    let mut serving = Some(connection.nats.subscribe(subject).await?);
    // Names this process, so a restart is seen as another instance answering.
    let instance = format!(
        "{} {}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let drain = drain();
    let mut stop = drain.stop.subscribe();
    let mut calls = JoinSet::new();
    let mut phase = Phase::Serving;
    let mut commands = std::pin::pin!(commands);
    loop {
        tokio::select! {
            invocation = next(&mut invocations) => match invocation {
                Some((instance, name, Ok(call))) => {
                    calls.spawn(async move {
                        if let Err(e) = call.await {
                            tracing::warn!(instance, name, error = ?e, "call failed");
                        }
                    });
                }
                Some((instance, name, Err(e))) => {
                    tracing::warn!(instance, name, error = ?e, "could not accept a call");
                }
                // Every subscription ended (the drain did it): no call can come any more.
                None => {
                    invocations = None;
                    if matches!(phase, Phase::Serving) {
                        tracing::error!("the invocation subscriptions ended while serving");
                    } else {
                        tracing::info!(in_progress = calls.len(), "drained the invocation subscriptions");
                    }
                }
            },
            Some(request) = next(&mut serving) => {
                if let Some(reply) = request.reply {
                    let _ = connection.nats.publish(reply, instance.clone().into()).await;
                }
            }
            // Reaps finished calls (the SDK's loop never did, so its set only grew).
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
            Ok(()) = stop.changed(), if matches!(phase, Phase::Serving) => {
                // New calls go to the other instances; the streams end once the server
                // confirmed, after the calls routed here before (see the module comment).
                if let Err(e) = connection.nats.drain_subscriptions(&invocation_prefix).await {
                    tracing::warn!(error = ?e, "could not drain the invocation subscriptions");
                    invocations = None;
                }
                serving = None;
                tracing::info!(in_progress = calls.len(), "taking no new calls; finishing those taken");
                phase = Phase::Draining(tokio::time::Instant::now() + DRAIN_BOUND);
            }
            () = sleep_until(&phase) => {
                tracing::warn!(abandoned = calls.len(), bound = ?DRAIN_BOUND, "calls still running at the drain bound");
                calls.abort_all();
                invocations = None;
                phase = drained(drain);
            }
            () = &mut commands => {
                // The SDK may end its loop without flushing the "shutting down" answer it just
                // queued (when another channel closes first); unflushed, the host would wait its
                // whole stop delay and then kill the process.
                let _ = tokio::time::timeout(Duration::from_secs(2), connection.nats.flush()).await;
                return Ok(());
            }
        }
        if matches!(phase, Phase::Draining(_)) && invocations.is_none() && calls.is_empty() {
            tracing::info!("every call taken finished");
            phase = drained(drain);
        }
    }
}

enum Phase {
    Serving,
    /// Taking no new calls (once the drain ended the subscriptions); those taken may run until
    /// the instant.
    Draining(tokio::time::Instant),
    Drained,
}

fn drained(drain: &Drain) -> Phase {
    drain.drained.send_replace(true);
    Phase::Drained
}

/// The next item of a stream that may be gone (then never).
async fn next<S: futures::Stream + Unpin>(stream: &mut Option<S>) -> Option<S::Item> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Ends at the drain bound while draining; never otherwise.
async fn sleep_until(phase: &Phase) {
    match phase {
        Phase::Draining(at) => tokio::time::sleep_until(*at).await,
        _ => std::future::pending().await,
    }
}
