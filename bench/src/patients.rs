//! Patients through the gateway (issue 4) at a fixed offered load, beside (a) a native Rust
//! service (axum + sqlx + redis) doing the same work against the same Postgres and Redis, and
//! (b) the host serving a trivial answer (the gateway's `/health`), all in one run.
//!
//! "The same work": a create validates, inserts the patient and its outbox row in one statement
//! and bumps the cache generation; a cached get reads the generation and the cached entry.
//! Load is open-loop: request i is due at `i / rate` seconds and its latency counts from then,
//! so a slow system cannot slow the load down and hide its own queueing.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::hops::{measure_counted, Host};
use crate::{row, Report};

const SECONDS: u64 = 10;
const WORKERS: usize = 32;

/// Sends `rate` requests per second for `SECONDS`, whatever the answers' pace.
pub fn offered(
    name: &'static str,
    rate: u32,
    call: impl Fn(usize) -> Result<()> + Send + Sync + 'static,
) -> Report {
    let total = rate as usize * SECONDS as usize;
    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now() + Duration::from_millis(100);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (call, next) = (call.clone(), next.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return out;
                    }
                    let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate));
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    out.push(call(i).map(|()| due.elapsed()));
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    let mut failed = 0;
    for worker in workers {
        for outcome in worker.join().expect("load worker") {
            match outcome {
                Ok(latency) => latencies.push(latency),
                Err(e) => {
                    failed += 1;
                    if failed <= 3 {
                        eprintln!("{name}: {e:#}");
                    }
                }
            }
        }
    }
    crate::summarize(name, latencies, failed, started.elapsed())
}

fn new_patient(i: usize, tag: &str) -> Value {
    json!({
        "name": format!("Bench Patient {i}"),
        "email": format!("bench-{tag}-{i}@example.test"),
        "address": "1 Benchmark Road",
        "dateOfBirth": "1980-01-01",
        "registeredDate": "2026-11-25"
    })
}

/// The native counterpart, listening on a free loopback port.
struct Native {
    pool: sqlx::PgPool,
    redis: redis::aio::ConnectionManager,
    prefix: String,
}

const NATIVE_SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS bench_native; \
    CREATE TABLE IF NOT EXISTS bench_native.patients (id uuid PRIMARY KEY, name text NOT NULL, email text NOT NULL, \
      address text NOT NULL, date_of_birth date NOT NULL, registered_date date NOT NULL); \
    CREATE UNIQUE INDEX IF NOT EXISTS bench_native_email ON bench_native.patients (lower(email)); \
    CREATE TABLE IF NOT EXISTS bench_native.outbox (seq bigserial PRIMARY KEY, id uuid NOT NULL, patient_id uuid NOT NULL, payload jsonb NOT NULL)";

async fn native_create(
    State(n): State<Arc<Native>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let text = |k: &str| body[k].as_str().unwrap_or_default().trim().to_string();
    let (name, email) = (text("name"), text("email").to_lowercase());
    if name.is_empty() || !email.contains('@') {
        return (StatusCode::BAD_REQUEST, Json(json!({"status": 400})));
    }
    let id = uuid();
    let inserted = sqlx::query(
        "WITH p AS (INSERT INTO bench_native.patients VALUES ($1::uuid, $2, $3, $4, $5::date, $6::date) RETURNING id) \
         INSERT INTO bench_native.outbox (id, patient_id, payload) SELECT $7::uuid, p.id, $8::jsonb FROM p",
    )
    .bind(&id).bind(&name).bind(&email).bind(text("address")).bind(text("dateOfBirth")).bind(text("registeredDate"))
    .bind(uuid()).bind(json!({"eventType": "PATIENT_CREATED", "patientId": id}).to_string())
    .execute(&n.pool)
    .await;
    if inserted.is_err() {
        return (StatusCode::CONFLICT, Json(json!({"status": 409})));
    }
    let mut redis = n.redis.clone();
    let _: redis::RedisResult<i64> = redis::cmd("INCR")
        .arg(format!("{}native:generation", n.prefix))
        .query_async(&mut redis)
        .await;
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "name": name, "email": email})),
    )
}

async fn native_get(
    State(n): State<Arc<Native>>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    let mut redis = n.redis.clone();
    let generation: i64 = redis::cmd("INCRBY")
        .arg(format!("{}native:generation", n.prefix))
        .arg(0)
        .query_async(&mut redis)
        .await
        .unwrap_or(0);
    let key = format!("{}native:g{generation}:patient:{id}", n.prefix);
    if let Ok(Some(hit)) = redis::cmd("GET")
        .arg(&key)
        .query_async::<Option<String>>(&mut redis)
        .await
    {
        if let Ok(value) = serde_json::from_str(&hit) {
            return (StatusCode::OK, Json(value));
        }
    }
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT name, email FROM bench_native.patients WHERE id = $1::uuid")
            .bind(&id)
            .fetch_optional(&n.pool)
            .await
            .unwrap_or(None);
    match row {
        Some((name, email)) => {
            let value = json!({"id": id, "name": name, "email": email});
            let _: redis::RedisResult<()> = redis::cmd("SET")
                .arg(&key)
                .arg(value.to_string())
                .arg("EX")
                .arg(600)
                .query_async(&mut redis)
                .await;
            (StatusCode::OK, Json(value))
        }
        None => (StatusCode::NOT_FOUND, Json(json!({"status": 404}))),
    }
}

/// A first page of ten by name with the total, as the platform's list answers it.
async fn native_list(State(n): State<Arc<Native>>) -> (StatusCode, Json<Value>) {
    let rows: Result<Vec<(String, String, String, i64)>, _> = sqlx::query_as(
        "SELECT id::text, name, email, count(*) OVER () FROM bench_native.patients ORDER BY name LIMIT 10",
    )
    .fetch_all(&n.pool)
    .await;
    match rows {
        Ok(rows) => {
            let total = rows.first().map_or(0, |r| r.3);
            let patients: Vec<Value> = rows
                .into_iter()
                .map(|(id, name, email, _)| json!({"id": id, "name": name, "email": email}))
                .collect();
            (
                StatusCode::OK,
                Json(json!({"patients": patients, "page": 1, "size": 10, "totalElements": total})),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": 503})),
        ),
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn start_native(
    runtime: &tokio::runtime::Runtime,
    database: &str,
    prefix: &str,
) -> Result<SocketAddr> {
    runtime.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .connect(&format!("postgres://postgres@127.0.0.1:5432/{database}"))
            .await?;
        sqlx::raw_sql(NATIVE_SCHEMA).execute(&pool).await?;
        let redis =
            redis::aio::ConnectionManager::new(redis::Client::open("redis://127.0.0.1:6379/0")?)
                .await?;
        let state = Arc::new(Native {
            pool,
            redis,
            prefix: prefix.to_string(),
        });
        let app = Router::new()
            .route("/api/patients", post(native_create).get(native_list))
            .route("/api/patients/{id}", get(native_get))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    })
}

/// Capacity figures (calls/s) the hop estimate in `main` is computed from.
pub struct Capacity {
    pub trivial: f64,
    pub native_created: f64,
}

/// One system under test: where to send requests and the `Authorization` it needs.
#[derive(Clone)]
struct Target {
    base: String,
    auth: Option<String>,
}

impl Target {
    fn request(&self, agent: &ureq::Agent, method: &str, path: &str) -> ureq::Request {
        let request = agent.request(method, &format!("{}{path}", self.base));
        match &self.auth {
            Some(auth) => request.set("authorization", auth),
            None => request,
        }
    }

    fn create(&self, agent: &ureq::Agent, tag: String) -> impl Fn(usize) -> Result<()> {
        let (agent, target) = (agent.clone(), self.clone());
        move |i| {
            target
                .request(&agent, "POST", "/api/patients")
                .send_json(new_patient(i, &tag))?;
            Ok(())
        }
    }

    fn read(&self, agent: &ureq::Agent, id: &str) -> impl Fn(usize) -> Result<()> {
        let (agent, target, path) = (agent.clone(), self.clone(), format!("/api/patients/{id}"));
        move |_| {
            target.request(&agent, "GET", &path).call()?;
            Ok(())
        }
    }

    /// The mixed load: of every ten requests, seven cached reads, two creates and a list
    /// (the first page by name).
    fn mixed(&self, agent: &ureq::Agent, id: &str, tag: String) -> impl Fn(usize) -> Result<()> {
        let (read, create) = (self.read(agent, id), self.create(agent, tag));
        let (agent, target) = (agent.clone(), self.clone());
        move |i| match i % 10 {
            0..=6 => read(i),
            7 | 8 => create(i),
            _ => {
                target
                    .request(&agent, "GET", "/api/patients?page=1&size=10&sortField=name")
                    .call()?;
                Ok(())
            }
        }
    }

    /// Creates one patient to read back, and reads it once so it is cached before timing.
    fn one_cached(&self, agent: &ureq::Agent, tag: &str) -> Result<String> {
        let created: Value = self
            .request(agent, "POST", "/api/patients")
            .send_json(new_patient(0, &format!("{tag}-read")))?
            .into_json()?;
        let id = created["id"].as_str().context("created id")?.to_string();
        self.read(agent, &id)(0)?;
        Ok(id)
    }
}

/// Numbers the calls of a closed-loop case from a million up, so creates' emails stay unique.
fn counted(f: impl Fn(usize) -> Result<()> + Send + Sync + 'static) -> impl Fn() -> Result<()> {
    let next = AtomicUsize::new(1_000_000);
    move || f(next.fetch_add(1, Ordering::Relaxed))
}

fn percent(part: &Report, whole: &Report) -> f64 {
    100.0 * part.per_second / whole.per_second
}

/// Runs the patients cases and prints them with their ratios.
pub fn run(agent: &ureq::Agent, gateway: &str, bearer: &str, host: &Host) -> Result<Capacity> {
    let database = std::env::var("PM_DATABASE").context("PM_DATABASE")?;
    let prefix = std::env::var("PM_KEY_PREFIX").context("PM_KEY_PREFIX")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let native_url = format!("http://{}", start_native(&runtime, &database, &prefix)?);
    let split = crate::split::start(&runtime, &native_url, &prefix)?;
    let tag = format!("{}", std::process::id());
    let platform = Target {
        base: gateway.to_string(),
        auth: Some(bearer.to_string()),
    };
    let split = Target {
        base: split.url,
        auth: Some(split.bearer),
    };
    let native = Target {
        base: native_url,
        auth: None,
    };
    let platform_id = platform.one_cached(agent, &format!("{tag}-p"))?;
    let split_id = split.one_cached(agent, &format!("{tag}-s"))?;
    let native_id = native.one_cached(agent, &format!("{tag}-n"))?;
    let health = {
        let get = crate::get_ok(agent, format!("{gateway}/health"));
        move |_: usize| get()
    };

    const READ_RATE: u32 = 200;
    const CREATE_RATE: u32 = 50;
    const MIXED_RATE: u32 = 300;
    println!("patients at a fixed offered load ({READ_RATE}/s reads, {CREATE_RATE}/s creates, {MIXED_RATE}/s mixed, {SECONDS} s per case):");
    let fixed = [
        offered(
            "trivial: GET /health through the host",
            READ_RATE,
            health.clone(),
        ),
        offered(
            "cached get via gateway → patients",
            READ_RATE,
            platform.read(agent, &platform_id),
        ),
        offered(
            "cached get, split gateway → service",
            READ_RATE,
            split.read(agent, &split_id),
        ),
        offered(
            "cached get, native axum+redis",
            READ_RATE,
            native.read(agent, &native_id),
        ),
        offered(
            "create, native axum+sqlx+redis",
            CREATE_RATE,
            native.create(agent, format!("{tag}-nf")),
        ),
        offered(
            "create, split gateway → service",
            CREATE_RATE,
            split.create(agent, format!("{tag}-sf")),
        ),
        offered(
            "create via gateway → patients",
            CREATE_RATE,
            platform.create(agent, format!("{tag}-pf")),
        ),
        offered(
            "mixed 70/20/10, split gateway → service",
            MIXED_RATE,
            split.mixed(agent, &split_id, format!("{tag}-sm")),
        ),
        offered(
            "mixed 70/20/10 via gateway (aim p99 < 25 ms)",
            MIXED_RATE,
            platform.mixed(agent, &platform_id, format!("{tag}-pm")),
        ),
    ];
    for r in &fixed {
        row(r);
    }

    // Capacity: as fast as 8 callers can go (closed loop), for the ratios the issue aims at.
    println!("\npatients at capacity (closed loop):");
    let trivial = crate::measure("trivial: GET /health through the host", counted(health))?;
    let (cached, cached_calls) = measure_counted(
        host,
        "cached get via gateway → patients",
        counted(platform.read(agent, &platform_id)),
    )?;
    let split_cached = crate::measure(
        "cached get, split gateway → service",
        counted(split.read(agent, &split_id)),
    )?;
    let native_cached = crate::measure(
        "cached get, native axum+redis",
        counted(native.read(agent, &native_id)),
    )?;
    // Natives first: the platform's creates leave outbox rows its relay drains for a while after.
    let native_created = crate::measure(
        "create, native axum+sqlx+redis",
        counted(native.create(agent, format!("{tag}-nc"))),
    )?;
    let split_created = crate::measure(
        "create, split gateway → service",
        counted(split.create(agent, format!("{tag}-sc"))),
    )?;
    let (created, created_calls) = measure_counted(
        host,
        "create via gateway → patients",
        counted(platform.create(agent, format!("{tag}-pc"))),
    )?;
    // The same two with every call over NATS, as before calls on one host went through memory.
    let probe = platform.read(agent, &platform_id);
    host.local_calls(false, || probe(0))?;
    let over_nats = (|| -> Result<_> {
        Ok((
            crate::measure(
                "cached get via gateway, calls over NATS",
                counted(platform.read(agent, &platform_id)),
            )?,
            crate::measure(
                "create via gateway, calls over NATS",
                counted(platform.create(agent, format!("{tag}-pn"))),
            )?,
        ))
    })();
    host.local_calls(true, || probe(0))?;
    let (cached_nats, created_nats) = over_nats?;
    for r in [
        &trivial,
        &cached,
        &cached_nats,
        &split_cached,
        &native_cached,
        &native_created,
        &split_created,
        &created,
        &created_nats,
    ] {
        row(r);
    }
    println!("  calls per cached get: {cached_calls}");
    println!("  calls per create: {created_calls}");
    println!(
        "  cached get: {:.0}% of the split peer (aim ≥ 20%; {:.0}% with every call over NATS), {:.0}% of native, {:.0}% of the trivial request",
        percent(&cached, &split_cached),
        percent(&cached_nats, &split_cached),
        percent(&cached, &native_cached),
        percent(&cached, &trivial),
    );
    println!(
        "  create: {:.0}% of the split peer (aim ≥ 12%; {:.0}% with every call over NATS), {:.0}% of native\n",
        percent(&created, &split_created),
        percent(&created_nats, &split_created),
        percent(&created, &native_created),
    );
    drop(runtime);
    Ok(Capacity {
        trivial: trivial.per_second,
        native_created: native_created.per_second,
    })
}
