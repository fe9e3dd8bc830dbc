//! The outbox relay's claim stays an index lookup on a large backlog (issue 22): its plan, as
//! Postgres makes it for a table of 5,000 waiting rows, reads no table whole. How fast such a
//! backlog drains is measured in `cargo xtask bench` (bench/src/relay.rs), not asserted here.
mod common;

use common::psql;
use serde_json::Value;

/// The plan nodes of an EXPLAIN (FORMAT JSON), depth first, as (node type, relation, index).
fn nodes(plan: &Value, out: &mut Vec<(String, String, String)>) {
    let field = |key: &str| plan[key].as_str().unwrap_or_default().to_string();
    out.push((
        field("Node Type"),
        field("Relation Name"),
        field("Index Name"),
    ));
    for child in plan["Plans"].as_array().into_iter().flatten() {
        nodes(child, out);
    }
}

/// The plan of the claim for `channel` on a backlog of 2,500 events and 2,500 billing opens,
/// made in a transaction that is never committed (the relay never sees these rows), after
/// ANALYZE (which counts the transaction's own rows) and with `plan_cache_mode` as given: the
/// provider's prepared statements may run on a custom or, after five runs, a generic plan.
fn claim_plan(plan_cache_mode: &str) -> Vec<(String, String, String)> {
    let database = std::env::var("PM_DATABASE").expect("PM_DATABASE");
    let claim = patients::outbox::CLAIM_SQL;
    let sql = format!(
        "BEGIN; SET LOCAL search_path = patients; \
         INSERT INTO outbox (id, patient_id, channel, kind, payload) \
         SELECT gen_random_uuid(), gen_random_uuid(), c, \
                CASE c WHEN 'event' THEN 'event' ELSE 'billing-open' END, '{{}}'::jsonb \
         FROM generate_series(1, 2500), (VALUES ('event'), ('billing')) AS ch(c); \
         ANALYZE outbox; \
         SET LOCAL plan_cache_mode = {plan_cache_mode}; \
         PREPARE claim(text, int8) AS {claim}; \
         EXPLAIN (FORMAT JSON) EXECUTE claim('billing', 200)"
    );
    let explained: Value = serde_json::from_str(&psql(&database, &sql)).expect("EXPLAIN's JSON");
    let mut out = Vec::new();
    nodes(&explained[0]["Plan"], &mut out);
    out
}

#[test]
fn the_claim_reads_no_table_whole_on_a_backlog_of_5000_rows() {
    for mode in ["force_custom_plan", "force_generic_plan"] {
        let plan = claim_plan(mode);
        let whole: Vec<_> = plan
            .iter()
            .filter(|(node, _, _)| node == "Seq Scan" || node.starts_with("Hash"))
            .collect();
        assert!(
            whole.is_empty(),
            "the claim ({mode}) reads a table whole: {plan:?}"
        );
        // Ordered by an index, not sorted after reading every waiting row.
        assert!(
            !plan.iter().any(|(node, _, _)| node == "Sort"),
            "the claim ({mode}) sorts: {plan:?}"
        );
        assert!(
            plan.iter()
                .any(|(node, relation, _)| node.starts_with("Index") && relation == "outbox"),
            "the claim ({mode}) uses no index on outbox: {plan:?}"
        );
    }
}
