//! The console's first page load (issue 21), in headless Chromium: from a cold cache (a new
//! browser profile each time) and a warm one (the same browser opening the console again in a
//! new visit). Time to interactive is the console's own mark (`pm:ready`, set once the first
//! page is drawn and its handlers are on), from the start of the navigation; bytes are what
//! crossed the network for the page and everything it loaded (Resource Timing's
//! `transferSize`, headers included; 0 for a file served from the browser's cache).
use anyhow::{anyhow, Result};
use serde_json::Value;

const RUNS: usize = 5;

/// One load's figures, read from the page.
const FIGURES: &str = "
    const ready = performance.getEntriesByName('pm:ready')[0];
    if (!ready) return null;
    const navigation = performance.getEntriesByType('navigation')[0];
    const resources = performance.getEntriesByType('resource');
    return {
        interactive: ready.startTime,
        bytes: navigation.transferSize + resources.reduce((sum, r) => sum + r.transferSize, 0),
        requests: 1 + resources.length,
        fromNetwork: (navigation.transferSize > 0 ? 1 : 0) + resources.filter(r => r.transferSize > 0).length,
    };";

struct Load {
    interactive_ms: f64,
    bytes: u64,
    requests: u64,
    from_network: u64,
}

pub fn run(gateway: &str) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for _ in 0..RUNS {
            let session = browser::Session::start(1280, 900)
                .await
                .map_err(|e| anyhow!(e))?;
            cold.push(load(&session, gateway).await?);
            // A new visit in the same browser: the page is revalidated, the rest is cached.
            session.client.goto("about:blank").await?;
            warm.push(load(&session, gateway).await?);
            session.end().await;
        }
        println!("\nconsole first page load ({RUNS} runs each, medians; headless Chromium on the same cores)");
        println!("| cache | time to interactive | bytes transferred | requests (from the network) |");
        println!("| --- | ---: | ---: | ---: |");
        for (name, loads) in [("cold", &mut cold), ("warm", &mut warm)] {
            loads.sort_by(|a, b| a.interactive_ms.total_cmp(&b.interactive_ms));
            let middle = &loads[loads.len() / 2];
            println!(
                "| {name} | {:.0} ms | {} | {} ({}) |",
                middle.interactive_ms, middle.bytes, middle.requests, middle.from_network
            );
        }
        Ok(())
    })
}

async fn load(session: &browser::Session, gateway: &str) -> Result<Load> {
    session.client.goto(&format!("{gateway}/")).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let figures: Value = session.client.execute(FIGURES, vec![]).await?;
        if !figures.is_null() {
            let number = |key: &str| figures[key].as_f64().unwrap_or_default();
            return Ok(Load {
                interactive_ms: number("interactive"),
                bytes: number("bytes") as u64,
                requests: number("requests") as u64,
                from_network: number("fromNetwork") as u64,
            });
        }
        if std::time::Instant::now() > deadline {
            return Err(anyhow!("the console did not become interactive in 30 s"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
