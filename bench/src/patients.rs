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
            .route("/api/patients", post(native_create))
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

/// Runs the patients cases and prints them with their ratios.
pub fn run(agent: &ureq::Agent, gateway: &str, bearer: &str) -> Result<Capacity> {
    let database = std::env::var("PM_DATABASE").context("PM_DATABASE")?;
    let prefix = std::env::var("PM_KEY_PREFIX").context("PM_KEY_PREFIX")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let native = format!("http://{}", start_native(&runtime, &database, &prefix)?);
    let tag = format!("{}", std::process::id());

    let create = |base: String, tag: String, auth: Option<String>| {
        let agent = agent.clone();
        move |i: usize| -> Result<()> {
            let mut request = agent.post(&format!("{base}/api/patients"));
            if let Some(auth) = &auth {
                request = request.set("authorization", auth);
            }
            request.send_json(new_patient(i, &tag))?;
            Ok(())
        }
    };
    // One patient each side to read back, created (and cached by a first read) before timing.
    let one = |base: &str, auth: Option<&str>| -> Result<String> {
        let mut request = agent.post(&format!("{base}/api/patients"));
        if let Some(auth) = auth {
            request = request.set("authorization", auth);
        }
        let created: Value = request
            .send_json(new_patient(0, &format!("{tag}-read")))?
            .into_json()?;
        Ok(created["id"].as_str().context("created id")?.to_string())
    };
    let read = |base: String, id: String, auth: Option<String>| {
        let agent = agent.clone();
        move |_: usize| -> Result<()> {
            let mut request = agent.get(&format!("{base}/api/patients/{id}"));
            if let Some(auth) = &auth {
                request = request.set("authorization", auth);
            }
            request.call()?;
            Ok(())
        }
    };
    let platform_id = one(gateway, Some(bearer))?;
    let native_id = one(&native, None)?;
    read(
        gateway.to_string(),
        platform_id.clone(),
        Some(bearer.to_string()),
    )(0)?;
    read(native.clone(), native_id.clone(), None)(0)?;

    const READ_RATE: u32 = 200;
    const CREATE_RATE: u32 = 50;
    println!("patients at a fixed offered load ({READ_RATE}/s reads, {CREATE_RATE}/s creates, {SECONDS} s per case):");
    let fixed = [
        offered("trivial: GET /health through the host", READ_RATE, {
            let (agent, url) = (agent.clone(), format!("{gateway}/health"));
            move |_| {
                agent.get(&url).call()?;
                Ok(())
            }
        }),
        offered(
            "cached get via gateway → patients",
            READ_RATE,
            read(
                gateway.to_string(),
                platform_id.clone(),
                Some(bearer.to_string()),
            ),
        ),
        offered(
            "cached get, native axum+redis",
            READ_RATE,
            read(native.clone(), native_id.clone(), None),
        ),
        offered(
            "create via gateway → patients",
            CREATE_RATE,
            create(
                gateway.to_string(),
                format!("{tag}-p"),
                Some(bearer.to_string()),
            ),
        ),
        offered(
            "create, native axum+sqlx+redis",
            CREATE_RATE,
            create(native.clone(), format!("{tag}-n"), None),
        ),
    ];
    for r in &fixed {
        row(r);
    }

    // Capacity: as fast as 8 callers can go (closed loop), for the ratios the issue aims at.
    println!("\npatients at capacity (closed loop):");
    let counter = |f: Box<dyn Fn(usize) -> Result<()> + Send + Sync>| {
        let next = AtomicUsize::new(1_000_000);
        move || f(next.fetch_add(1, Ordering::Relaxed))
    };
    let trivial = crate::measure("trivial: GET /health through the host", {
        let (agent, url) = (agent.clone(), format!("{gateway}/health"));
        move || {
            agent.get(&url).call()?;
            Ok(())
        }
    })?;
    let cached = crate::measure(
        "cached get via gateway → patients",
        counter(Box::new(read(
            gateway.to_string(),
            platform_id,
            Some(bearer.to_string()),
        ))),
    )?;
    let native_cached = crate::measure(
        "cached get, native axum+redis",
        counter(Box::new(read(native.clone(), native_id, None))),
    )?;
    // Native first: the platform's creates leave outbox rows its relay drains for a while after.
    let native_created = crate::measure(
        "create, native axum+sqlx+redis",
        counter(Box::new(create(native, format!("{tag}-nc"), None))),
    )?;
    let created = crate::measure(
        "create via gateway → patients",
        counter(Box::new(create(
            gateway.to_string(),
            format!("{tag}-pc"),
            Some(bearer.to_string()),
        ))),
    )?;
    for r in [&trivial, &cached, &native_cached, &native_created, &created] {
        row(r);
    }
    println!(
        "  cached get: {:.0}% of the trivial component's throughput (aim ≥ 50%), {:.0}% of native; create: {:.0}% of native throughput (aim ≥ 50%)\n",
        100.0 * cached.per_second / trivial.per_second,
        100.0 * cached.per_second / native_cached.per_second,
        100.0 * created.per_second / native_created.per_second,
    );
    drop(runtime);
    Ok(Capacity {
        trivial: trivial.per_second,
        native_created: native_created.per_second,
    })
}
