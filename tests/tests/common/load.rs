//! A bounded, paced load against the gateway that records every answer, for the operations
//! tests (hot swap, failover): they assert on what each request got while the lattice changed.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request's fate.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// When it was sent, since the load started.
    pub sent: Duration,
    /// The HTTP status, or None when no HTTP answer came (connection dropped or refused).
    pub status: Option<u16>,
    /// The answer's body (or the transport error), for telling builds apart.
    pub body: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.status == Some(200)
    }
}

pub struct Load {
    pub started: Instant,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// `clients` keep-alive connections, each sending GET `path` `per_second` times a second.
    pub fn start(path: &str, clients: usize, per_second: u32) -> Self {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let url = format!("{}{path}", super::gateway());
        let interval = Duration::from_secs(1) / per_second;
        let clients = (0..clients)
            .map(|_| {
                let (stop, outcomes, url) = (stop.clone(), outcomes.clone(), url.clone());
                std::thread::spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(30))
                        .build();
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let sent = started.elapsed();
                        let (status, body) = match agent.get(&url).call() {
                            Ok(r) => (Some(r.status()), r.into_string().unwrap_or_default()),
                            Err(ureq::Error::Status(s, r)) => {
                                (Some(s), r.into_string().unwrap_or_default())
                            }
                            Err(e) => (None, e.to_string()),
                        };
                        outcomes
                            .lock()
                            .unwrap()
                            .push(Outcome { sent, status, body });
                        // Pacing, not synchronisation: this is the offered rate.
                        next += interval;
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        } else {
                            next = Instant::now();
                        }
                    }
                })
            })
            .collect();
        Self {
            started,
            stop,
            outcomes,
            clients,
        }
    }

    /// The answers so far.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }

    /// Time since the load started (to compare with `Outcome::sent`).
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until some request sent after `since` got an answer that `matches`, then returns.
    pub fn wait_for_answer(&self, what: &str, since: Duration, matches: impl Fn(&Outcome) -> bool) {
        super::eventually(what, Duration::from_secs(60), || {
            self.outcomes()
                .iter()
                .any(|o| o.sent >= since && matches(o))
                .then_some(())
        });
    }

    /// Stops every client and returns all answers and how long the load ran.
    pub fn finish(self) -> (Vec<Outcome>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.join().expect("load client panicked");
        }
        let ran = self.started.elapsed();
        let outcomes = self.outcomes.lock().unwrap().clone();
        (outcomes, ran)
    }
}
