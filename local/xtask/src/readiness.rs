//! When the platform serves: every service answers, through the gateway, a request that needs
//! its own database. wadm's "Deployed" and `/health` say only that components, providers and
//! links were placed; a provider that did not take up a link shows only here (as a 503).
use std::net::SocketAddr;

use anyhow::{bail, Result};

use crate::net;

/// One request per service: (service, method, path, body, statuses that mean it works).
const CHECKS: &[(&str, &str, &str, &str, &[u16])] = &[
    // An unknown user: 401 once auth can read its users table.
    ("auth", "POST", "/auth/login", r#"{"email":"readiness@check.invalid","password":"not-a-password"}"#, &[401]),
    ("patients", "GET", "/api/patients?size=1", "", &[200]),
    ("billing", "GET", "/api/billing/accounts/123e4567-e89b-12d3-a456-426614174000", "", &[200, 404]),
    ("appointments", "GET", "/api/appointments?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z", "", &[200]),
    ("analytics", "GET", "/api/analytics/summary", "", &[200]),
];

/// The issuer the manifest configures (`jwt_issuer`).
const ISSUER: &str = "patient-management";

/// Ok when every service answers as it should; else an error naming each one that does not
/// and what it said.
pub fn check(gateway: SocketAddr, jwt_secret: &str) -> Result<()> {
    let tokens = kit::tokens::Tokens::new(jwt_secret.as_bytes(), ISSUER).map_err(anyhow::Error::msg)?;
    let mut failing = Vec::new();
    for (service, method, path, body, good) in CHECKS {
        // Each check is its own caller (subject, client address), so none uses up another's
        // rate-limit tokens or a test's.
        let caller = format!("readiness-{service}");
        let (token, _) = tokens
            .issue(&format!("{caller}@xtask"), "ADMIN", kit::tokens::now(), 60)
            .map_err(anyhow::Error::msg)?;
        let bearer = format!("Bearer {token}");
        let mut headers = vec![("x-forwarded-for", caller.as_str()), ("authorization", bearer.as_str())];
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        match net::http(gateway, method, path, &headers, body) {
            Ok((status, _)) if good.contains(&status) => {}
            Ok((status, answer)) => failing.push(format!("{service}: {status} {}", first_line(&answer))),
            Err(e) => failing.push(format!("{service}: no answer ({e:#})")),
        }
    }
    if failing.is_empty() {
        Ok(())
    } else {
        bail!("not serving yet: {}", failing.join("; "))
    }
}

fn first_line(body: &str) -> String {
    body.lines().find(|l| l.contains("detail")).unwrap_or(body).chars().take(200).collect()
}
