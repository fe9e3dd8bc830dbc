//! A bounded, paced load against the gateway that records every answer, for the operations
//! tests (hot swap, failover, scaling): they assert on what each request got while the lattice
//! changed.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request a load client sends.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub body: Option<serde_json::Value>,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl Request {
    pub fn get(path: &str) -> Self {
        Self {
            method: "GET",
            path: path.to_string(),
            body: None,
            token: None,
        }
    }

    pub fn post(path: &str, body: serde_json::Value) -> Self {
        Self {
            method: "POST",
            body: Some(body),
            ..Self::get(path)
        }
    }

    pub fn with_token(self, token: String) -> Self {
        Self {
            token: Some(token),
            ..self
        }
    }
}

/// `request` as an ADMIN whose subject no other request uses: the rate limiter keys on the
/// subject, and these loads exercise swaps, scaling and outages, not the limiter (as a clinic's
/// many staff would, each under their own limit). `client` and `n` are what `Next` is given.
pub fn as_fresh_admin(request: Request, client: usize, n: u64) -> Request {
    let subject = format!("{}-{client}-{n}", super::unique("load"));
    request.with_token(super::token(&subject, "ADMIN"))
}

/// One request's fate.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub method: &'static str,
    pub path: String,
    /// When it was sent, since the load started.
    pub sent: Duration,
    /// How long its answer took.
    pub took: Duration,
    /// The HTTP status, or None when no HTTP answer came (connection dropped or refused).
    pub status: Option<u16>,
    /// The answer's body (or the transport error), for telling builds apart.
    pub body: String,
    /// The answering domain component's build (`x-pm-build`; absent from a plain build).
    pub build: Option<String>,
}

impl Outcome {
    /// A success: 200 for a read, 201 for a create.
    pub fn ok(&self) -> bool {
        matches!(self.status, Some(200 | 201))
    }
}

/// What a load client sends next: called with the client's index and its request count.
pub type Next = dyn Fn(usize, u64) -> Request + Send + Sync;

pub struct Load {
    pub started: Instant,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// `clients` keep-alive connections, each sending GET `path` `per_second` times a second.
    pub fn start(path: &str, clients: usize, per_second: u32) -> Self {
        let path = path.to_string();
        Self::start_with(clients, per_second, move |_, _| Request::get(&path))
    }

    /// `clients` keep-alive connections, each sending `per_second` requests a second, each the
    /// one `next` makes.
    pub fn start_with(
        clients: usize,
        per_second: u32,
        next: impl Fn(usize, u64) -> Request + Send + Sync + 'static,
    ) -> Self {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let next: Arc<Next> = Arc::new(next);
        let interval = Duration::from_secs(1) / per_second;
        let clients = (0..clients)
            .map(|client| {
                let (stop, outcomes, next) = (stop.clone(), outcomes.clone(), next.clone());
                std::thread::spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(30))
                        .build();
                    let mut due = Instant::now();
                    let mut count = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let request = next(client, count);
                        count += 1;
                        let sent = started.elapsed();
                        let outcome = send(&agent, request, sent);
                        outcomes.lock().unwrap().push(outcome);
                        // Pacing, not synchronisation: this is the offered rate.
                        due += interval;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        } else {
                            due = Instant::now();
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

fn send(agent: &ureq::Agent, request: Request, sent: Duration) -> Outcome {
    let url = format!("{}{}", super::gateway(), request.path);
    let mut call = agent.request(request.method, &url);
    if let Some(token) = &request.token {
        call = call.set("authorization", &format!("Bearer {token}"));
    }
    let began = Instant::now();
    let answer = match &request.body {
        Some(json) => call.send_json(json.clone()),
        None => call.call(),
    };
    let (status, build, body) = match answer {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (
            Some(r.status()),
            r.header(platform_wit::BUILD_HEADER).map(str::to_string),
            r.into_string().unwrap_or_default(),
        ),
        Err(e) => (None, None, e.to_string()),
    };
    Outcome {
        method: request.method,
        path: request.path,
        sent,
        took: began.elapsed(),
        status,
        body,
        build,
    }
}
