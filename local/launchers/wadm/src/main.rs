//! wadm for the patient-management lattice: the `wadm` crate's own CLI configuration
//! (`--nats-server`, `WADM_NATS_SERVER`, ...) and nothing else. It exits non-zero when any wadm
//! task fails, so a supervisor (or `cargo xtask up`) notices instead of a silent half-running wadm.
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = wadm::config::WadmConfig::parse();
    let filter = EnvFilter::try_from_env("PM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if config.structured_logging {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let mut tasks = wadm::start_wadm(config).await?;
    tracing::info!("wadm started");
    tokio::select! {
        res = tasks.join_next() => match res {
            Some(Ok(Ok(()))) | None => { tracing::info!("wadm stopped"); Ok(()) }
            Some(Ok(Err(e))) => Err(e.context("a wadm task failed")),
            Some(Err(e)) => Err(anyhow::anyhow!("a wadm task panicked: {e}")),
        },
        _ = shutdown_signal() => { tracing::info!("shutdown requested"); Ok(()) }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
}
