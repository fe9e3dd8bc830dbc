//! The split peer (issue 22): what a Rust team would build instead of the platform, in the same
//! shape as the seed's gateway and patient service. A native gateway checks the caller's JWT
//! locally (HS256: signature, expiry, algorithm), takes a rate-limit token in Redis (one Lua call
//! that also refuses an ended session, as the platform's `token-bucket.admit` does), then
//! forwards the request over a pooled keep-alive HTTP client to the native patient service in
//! `patients.rs` (axum + sqlx + redis, the same Postgres and Redis). Every platform figure is
//! printed beside this one, from the same run.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::json;

/// GCRA, as the platform's Redis provider runs it, after the session check: {allowed, wait ms}.
/// KEYS[1] the bucket, KEYS[2] the session's `ended` marker; ARGV[1] interval ms, ARGV[2] burst.
const ADMIT: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return {2, 0} end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local allowed_from = tat - interval * (burst - 1)
if now < allowed_from then return {0, math.ceil(allowed_from - now)} end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.max(1, math.ceil(next_tat - now)))
return {1, 0}
"#;

#[derive(serde::Deserialize, serde::Serialize)]
struct Claims {
    sub: String,
    jti: String,
    exp: u64,
}

struct Gateway {
    key: DecodingKey,
    validation: Validation,
    redis: redis::aio::ConnectionManager,
    admit: redis::Script,
    prefix: String,
    client: Client<HttpConnector, Body>,
    upstream: String,
}

fn refuse(status: StatusCode) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({ "status": status.as_u16() }).to_string(),
    )
        .into_response()
}

async fn forward(State(g): State<Arc<Gateway>>, mut request: Request) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(claims) =
        token.and_then(|t| jsonwebtoken::decode::<Claims>(t, &g.key, &g.validation).ok())
    else {
        return refuse(StatusCode::UNAUTHORIZED);
    };
    let mut redis = g.redis.clone();
    let admitted: redis::RedisResult<(i64, i64)> = g
        .admit
        .key(format!("{}split:bucket:{}", g.prefix, claims.claims.sub))
        .key(format!("{}split:ended:{}", g.prefix, claims.claims.jti))
        // The bench lifts the limit, as the platform's bench lattice does.
        .arg(1)
        .arg(1_000_000)
        .invoke_async(&mut redis)
        .await;
    match admitted {
        Ok((1, _)) => {}
        Ok((2, _)) => return refuse(StatusCode::UNAUTHORIZED),
        Ok(_) => return refuse(StatusCode::TOO_MANY_REQUESTS),
        Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE),
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let Ok(uri) = format!("{}{path}", g.upstream).parse::<Uri>() else {
        return refuse(StatusCode::BAD_REQUEST);
    };
    *request.uri_mut() = uri;
    request.headers_mut().remove(header::AUTHORIZATION);
    match g.client.request(request).await {
        Ok(answer) => answer.map(Body::new),
        Err(_) => refuse(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// A running split gateway: its address, and a token it accepts.
pub struct Split {
    pub url: String,
    pub bearer: String,
}

/// Starts the split gateway on a free loopback port, forwarding to `upstream` (`http://...`).
pub fn start(runtime: &tokio::runtime::Runtime, upstream: &str, prefix: &str) -> Result<Split> {
    // A fresh secret per run: the peer's tokens mean nothing outside this process.
    let secret = [
        *uuid::Uuid::new_v4().as_bytes(),
        *uuid::Uuid::new_v4().as_bytes(),
    ]
    .concat();
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
    let claims = Claims {
        sub: "bench-admin".into(),
        jti: uuid::Uuid::new_v4().to_string(),
        exp,
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret),
    )?;
    let addr: SocketAddr = runtime.block_on(async {
        let redis =
            redis::aio::ConnectionManager::new(redis::Client::open("redis://127.0.0.1:6379/0")?)
                .await?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let gateway = Arc::new(Gateway {
            key: DecodingKey::from_secret(&secret),
            validation: Validation::new(Algorithm::HS256),
            redis,
            admit: redis::Script::new(ADMIT),
            prefix: prefix.to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            upstream: upstream.to_string(),
        });
        let app = Router::new().fallback(forward).with_state(gateway);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        anyhow::Ok(addr)
    })?;
    Ok(Split {
        url: format!("http://{addr}"),
        bearer: format!("Bearer {token}"),
    })
}
