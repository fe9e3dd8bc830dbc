//! The API answers as its OpenAPI document says (issue 17): schemathesis, a property-based
//! tester nobody here wrote, generates requests from the merged `/api-docs` (valid and invalid
//! data, boundary values, then chains of calls through the stateful phase) and checks every
//! answer against the document. Zero failures is the bar.
//!
//! The seed and the number of examples per operation are fixed so a run can be repeated;
//! `PM_CONFORMANCE_SEED` and `PM_CONFORMANCE_EXAMPLES` change them for a run by hand.
//!
//! It runs after every other test binary (cargo runs them in name order; `schemathesis` sorts
//! last): its stateful phase deletes and changes whatever the listings show it, the seed patients
//! too, which other tests read.
mod common;

use std::path::PathBuf;
use std::process::Command;

const DEFAULT_SEED: &str = "20261130";
const DEFAULT_EXAMPLES: &str = "25";
/// Tokens in the pool the hook hands out, one per request in turn: each subject gets a request
/// every few seconds at most, far under its rate limit.
const TOKENS: usize = 2_000;

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[test]
fn the_api_answers_as_its_openapi_document_says() {
    let schemathesis = std::env::var("PM_SCHEMATHESIS_PATH")
        .expect("PM_SCHEMATHESIS_PATH: run with `cargo xtask test`");
    let dir = std::env::temp_dir().join(common::unique("conformance"));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    let pool: Vec<String> = (0..TOKENS)
        .map(|i| common::token(&format!("conformance-{i}@example.test"), "ADMIN"))
        .collect();
    std::fs::write(&tokens, pool.join("\n")).unwrap();
    let report = dir.join("report.json");
    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance");
    let seed = setting("PM_CONFORMANCE_SEED", DEFAULT_SEED);
    let examples = setting("PM_CONFORMANCE_EXAMPLES", DEFAULT_EXAMPLES);

    let status = Command::new("python3")
        .args([
            "-c",
            "from schemathesis.cli import schemathesis; schemathesis()",
        ])
        .arg("--config-file")
        .arg(hooks.join("schemathesis.toml"))
        .args(["run", &format!("{}/api-docs", common::gateway())])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", &seed, "--max-examples", &examples])
        .args(["--workers", "2", "--request-timeout", "20"])
        .args(["--report", "json", "--report-json-path"])
        .arg(&report)
        .arg("--no-color")
        .env(
            "PYTHONPATH",
            std::env::join_paths([PathBuf::from(&schemathesis), hooks]).unwrap(),
        )
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PM_CONFORMANCE_TOKENS", &tokens)
        .current_dir(&dir)
        .status()
        .expect("python3 runs schemathesis");

    let text = std::fs::read_to_string(&report).expect("schemathesis wrote its JSON report");
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let operations = &report["operations"];
    let cases = &report["test_cases"];
    common::report(&format!(
        "conformance (schemathesis {}, seed {seed}, {examples} examples per operation): \
         {} of {} operations tested, {} test cases generated, {} with failures, {} unique failures, \
         {} errored; {:.0} s",
        report["schemathesis_version"].as_str().unwrap_or("?"),
        operations["tested"],
        operations["total"],
        cases["generated"],
        cases["with_failures"],
        cases["unique_failures"],
        cases["errored"],
        report["running_time"].as_f64().unwrap_or_default(),
    ));
    let failures = report["failures"].as_array().cloned().unwrap_or_default();
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    for failure in &failures {
        println!(
            "failure: {} ({}) x{} in {}",
            failure["title"], failure["code"], failure["count"], failure["operations"]
        );
    }
    for error in &errors {
        println!("error: {} x{}", error["title"], error["count"]);
    }
    assert!(
        operations["tested"].as_u64().unwrap_or(0) > 0
            && cases["generated"].as_u64().unwrap_or(0) > 0,
        "schemathesis tested nothing: {text}"
    );
    assert!(
        failures.is_empty() && errors.is_empty() && status.success(),
        "schemathesis found {} kinds of failure and {} errors (exit {status}); its output above \
         names each with a curl command that reproduces it",
        failures.len(),
        errors.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
