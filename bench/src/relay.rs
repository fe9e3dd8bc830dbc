//! How fast patients' outbox relay drains a backlog (issue 22): 2,500 patients written straight
//! into the database with their two outbox rows each (a `PATIENT_CREATED` event and a billing
//! open), 5,000 rows in one commit, as a Kafka or billing outage would leave them. Their relay
//! (the ticker, once a second) then publishes every event and opens every account for real. The
//! bench times the drain and counts the CPU Postgres spent meanwhile.
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

const PATIENTS: usize = 2500;

/// CPU seconds (user + system) spent so far by every `postgres` process on this machine.
fn postgres_cpu_seconds() -> f64 {
    let ticks_per_second = 100.0; // USER_HZ, 100 on Linux
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... : fields after the closing parenthesis, utime and stime are the
        // 12th and 13th of those.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += field(11) + field(12);
    }
    ticks as f64 / ticks_per_second
}

pub fn run(runtime: &tokio::runtime::Runtime, database: &str) -> Result<()> {
    let pool = runtime.block_on(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&format!(
                "postgres://postgres@127.0.0.1:5432/{database}?options=-csearch_path%3Dpatients"
            )),
    )?;
    let waiting = || -> Result<i64> {
        Ok(runtime.block_on(
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox").fetch_one(&pool),
        )?)
    };
    let tag = std::process::id();
    runtime.block_on(
        sqlx::query(
            "WITH p AS ( \
               INSERT INTO patients (id, name, email, address, date_of_birth, registered_date) \
               SELECT gen_random_uuid(), 'Backlog Patient ' || i, 'backlog-' || $1 || '-' || i || '@example.test', \
                      '1 Backlog Road', '1980-01-01', '2026-12-01' \
               FROM generate_series(1, $2::int) AS i RETURNING id, name, email) \
             INSERT INTO outbox (id, patient_id, channel, kind, payload) \
             SELECT gen_random_uuid(), p.id, 'event', 'event', jsonb_build_object( \
                 'eventId', gen_random_uuid()::text, 'eventType', 'PATIENT_CREATED', \
                 'patientId', p.id::text, 'name', p.name, 'email', p.email, \
                 'occurredAt', '2026-12-01T00:00:00Z', 'registeredDate', '2026-12-01') FROM p \
             UNION ALL \
             SELECT gen_random_uuid(), p.id, 'billing', 'billing-open', \
                 jsonb_build_object('patientId', p.id::text, 'name', p.name, 'email', p.email) FROM p",
        )
        .bind(tag.to_string())
        .bind(PATIENTS as i32)
        .execute(&pool),
    )?;
    let (started, cpu_before) = (Instant::now(), postgres_cpu_seconds());
    let backlog = waiting()?;
    loop {
        let left = waiting()?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the relay left {left} of {backlog} rows after 300 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (seconds, cpu) = (
        started.elapsed().as_secs_f64(),
        postgres_cpu_seconds() - cpu_before,
    );
    let opened: i64 = runtime
        .block_on(
            sqlx::query_scalar(
                "SELECT count(*) FROM billing.accounts WHERE email LIKE 'backlog-' || $1 || '-%'",
            )
            .bind(tag.to_string())
            .fetch_one(&pool),
        )
        .context("counting the backlog's billing accounts")?;
    println!(
        "outbox relay, a backlog of {backlog} rows ({PATIENTS} events, {PATIENTS} billing opens):"
    );
    println!(
        "  drained in {seconds:.1} s ({:.0} rows/s); Postgres used {cpu:.1} CPU-seconds meanwhile ({:.0}% of one core); {opened} of {PATIENTS} accounts opened\n",
        backlog as f64 / seconds,
        100.0 * cpu / seconds
    );
    Ok(())
}
