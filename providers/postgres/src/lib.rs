//! Postgres capability provider: serves `wasmcloud:postgres/query@0.1.1-draft` (upstream's
//! interface, so either side can be swapped) and `pm:platform/sql-transaction` (ours: upstream
//! has no transactions) to linked components, one pool per link.
mod config;
mod database;
mod values;

use std::collections::HashMap;
use std::sync::Arc;

use provider_support::{secret_strings, LinkKey};
use tokio::sync::RwLock;
use wasmcloud_provider_sdk::{Context, LinkConfig, LinkDeleteInfo, Provider};

use bindings::exports::pm::platform::sql_transaction::Statement;
use bindings::wasmcloud::postgres::types::{PgValue, QueryError, ResultRow};
use config::LinkSettings;
use database::Database;

pub mod bindings {
    wit_bindgen_wrpc::generate!({
        world: "postgres-provider",
        path: "../../wit",
        generate_all,
    });
}

#[derive(Clone, Default)]
pub struct PostgresProvider {
    links: Arc<RwLock<HashMap<LinkKey, Arc<Database>>>>,
}

impl PostgresProvider {
    async fn database(&self, cx: Option<&Context>) -> Result<Arc<Database>, QueryError> {
        let key = LinkKey::from_context(cx)
            .ok_or_else(|| QueryError::Unexpected("call without a component identity".into()))?;
        self.links.read().await.get(&key).cloned().ok_or_else(|| {
            QueryError::Unexpected(format!(
                "no usable Postgres link for {key}; see the provider log"
            ))
        })
    }
}

pub async fn run() -> anyhow::Result<()> {
    provider_support::drain::run_provider(
        PostgresProvider::default(),
        "postgres-provider",
        bindings::serve,
    )
    .await
}

impl Provider for PostgresProvider {
    async fn receive_link_config_as_target(&self, link: LinkConfig<'_>) -> anyhow::Result<()> {
        provider_support::links::received(&link);
        let key = LinkKey::new(link.source_id, link.link_name);
        let settings = match LinkSettings::from_link(link.config, &secret_strings(link.secrets)) {
            Ok(s) => s,
            Err(e) => {
                // Reported once, naming the link; the provider keeps serving other links.
                tracing::error!(link = %key, error = %format!("{e:#}"), "rejected Postgres link configuration");
                return Err(e);
            }
        };
        // A component links once per interface (query, sql-transaction) with the same config:
        // keep the pool it already has rather than replacing it under running calls.
        if self
            .links
            .read()
            .await
            .get(&key)
            .is_some_and(|db| db.settings == settings)
        {
            return Ok(());
        }
        let mut links = self.links.write().await;
        let database = Arc::new(match links.get(&key) {
            Some(old) => Database::replacing(settings, old),
            None => Database::new(settings),
        });
        // Calls already under way finish on the old pool (a password rotation lets both
        // credentials in until every provider has switched: docs/operations.md).
        if let Some(old) = links.insert(key.clone(), database.clone()) {
            Database::retire(old);
        }
        drop(links);
        // Connect and migrate now so problems show up in the log at deploy time; a failure is
        // retried by the next call, so the link recovers when the database comes back.
        tokio::spawn(async move {
            match database.prepare().await {
                Ok(_) => {
                    tracing::info!(link = %key, database = %database.settings.describe(), "Postgres link ready")
                }
                Err(e) => tracing::error!(
                    link = %key,
                    database = %database.settings.describe(),
                    error = ?e,
                    "Postgres link cannot reach its database yet; calls answer with an error until it can"
                ),
            }
        });
        Ok(())
    }

    async fn delete_link_as_target(&self, info: impl LinkDeleteInfo) -> anyhow::Result<()> {
        let key = LinkKey::new(info.get_source_id(), info.get_link_name());
        if let Some(db) = self.links.write().await.remove(&key) {
            db.close().await;
        }
        Ok(())
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        // The calls in progress may still need what is closed below.
        provider_support::drain::finish_calls().await;
        for (_, db) in self.links.write().await.drain() {
            db.close().await;
        }
        Ok(())
    }
}

impl bindings::exports::wasmcloud::postgres::query::Handler<Option<Context>> for PostgresProvider {
    async fn query(
        &self,
        cx: Option<Context>,
        query: String,
        params: Vec<PgValue>,
    ) -> anyhow::Result<Result<Vec<ResultRow>, QueryError>> {
        Ok(match self.database(cx.as_ref()).await {
            Ok(db) => db.query(&query, params).await,
            Err(e) => Err(e),
        })
    }

    async fn query_batch(
        &self,
        cx: Option<Context>,
        query: String,
    ) -> anyhow::Result<Result<(), QueryError>> {
        Ok(match self.database(cx.as_ref()).await {
            Ok(db) => db.batch(&query).await,
            Err(e) => Err(e),
        })
    }
}

impl bindings::exports::pm::platform::sql_transaction::Handler<Option<Context>>
    for PostgresProvider
{
    async fn execute(
        &self,
        cx: Option<Context>,
        statements: Vec<Statement>,
    ) -> anyhow::Result<Result<Vec<Vec<ResultRow>>, QueryError>> {
        let statements = statements.into_iter().map(|s| (s.sql, s.params)).collect();
        Ok(match self.database(cx.as_ref()).await {
            Ok(db) => db.transaction(statements).await,
            Err(e) => Err(e),
        })
    }
}
