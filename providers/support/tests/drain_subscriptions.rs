//! The NATS client as the providers build it (async-nats with the drain fix of
//! local/xtask/src/patches.rs), against a real nats-server: a queue subscription drained while
//! messages pour in loses none of those the server routed to it. Unfixed, the client forgot the
//! subscription as soon as it wrote the UNSUB and dropped what was still on its way.
//!
//! Needs `PM_NATS_SERVER`, the nats-server binary; `cargo xtask test` sets it.
use std::collections::HashSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{timeout, Instant};

const ROUNDS: usize = 8;

/// A nats-server on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    async fn start() -> Self {
        let binary = std::env::var_os("PM_NATS_SERVER")
            .expect("PM_NATS_SERVER names the nats-server binary (cargo xtask test sets it)");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let server = Server {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.url).await.expect("connects")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns once the server has handled every subscription `subscriber` made so far: `flush`
/// only writes them, and a message published before the server reads a SUB reaches no one (seen:
/// the first 23 messages of a run lost before any drain, as none of the group was subscribed
/// yet). The server handles a connection's SUBs in order, so a message on a subject subscribed
/// after them arriving proves they are in place; it is published until one does.
async fn server_has_subscribed(subscriber: &async_nats::Client, publisher: &async_nats::Client) {
    let mut ready = subscriber.subscribe("ready").await.unwrap();
    subscriber.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publisher.publish("ready", "".into()).await.unwrap();
        publisher.flush().await.unwrap();
        if let Ok(Some(_)) = timeout(Duration::from_millis(50), ready.next()).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server never routed to a new subscription"
        );
    }
}

/// Notes a message's number; each may arrive once.
fn record(seen: &mut HashSet<u32>, message: async_nats::Message) {
    let n: u32 = std::str::from_utf8(&message.payload)
        .unwrap()
        .parse()
        .unwrap();
    assert!(seen.insert(n), "message {n} arrived twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_queue_subscription_loses_no_message_routed_to_it() {
    let server = Server::start().await;
    let (draining, staying, publisher) = (
        server.client().await,
        server.client().await,
        server.client().await,
    );
    // Another subscription of the same client, outside the prefix, must outlive the drain.
    let mut untouched = draining.subscribe("other").await.unwrap();
    let mut remaining = staying
        .queue_subscribe("calls.work", "workers".into())
        .await
        .unwrap();
    server_has_subscribed(&staying, &publisher).await;

    // The other member of the queue group is read all along, so its buffer never overflows.
    let (to_main, mut from_remaining) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = remaining.next().await {
            if to_main.send(message).is_err() {
                return;
            }
        }
    });
    // Messages pour in until the drain is over, so some are always on their way to it.
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut published = 0u32;
            while !stop.load(Ordering::Relaxed) {
                publisher
                    .publish("calls.work", published.to_string().into())
                    .await
                    .unwrap();
                published += 1;
            }
            publisher
                .publish("other", "still here".into())
                .await
                .unwrap();
            publisher.flush().await.unwrap();
            published
        }
    });

    let mut seen = HashSet::new();
    // Each round joins the queue group and drains again: whether messages are on their way at
    // the instant of the drain is up to timing, so one round may not catch a loss.
    for _ in 0..ROUNDS {
        let mut drained = draining
            .queue_subscribe("calls.work", "workers".into())
            .await
            .unwrap();
        for _ in 0..200 {
            let message = timeout(Duration::from_secs(10), drained.next()).await;
            record(
                &mut seen,
                message.ok().flatten().expect("messages before the drain"),
            );
        }
        draining.drain_subscriptions("calls.").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(message) = timeout(deadline - Instant::now(), drained.next())
            .await
            .expect("the drained subscription ends once the server confirmed")
        {
            record(&mut seen, message);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    let published = publishing.await.unwrap();
    while seen.len() < published as usize {
        match timeout(deadline - Instant::now(), from_remaining.recv()).await {
            Ok(Some(message)) => record(&mut seen, message),
            _ => break,
        }
    }
    let lost: Vec<u32> = (0..published).filter(|n| !seen.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {published} messages lost, the first of them: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );

    let other = timeout(Duration::from_secs(5), untouched.next()).await;
    assert!(
        matches!(other, Ok(Some(ref m)) if &m.payload[..] == b"still here"),
        "a subscription outside the prefix stays"
    );
}
