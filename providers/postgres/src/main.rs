#[tokio::main]
async fn main() -> anyhow::Result<()> {
    postgres_provider::run().await
}
