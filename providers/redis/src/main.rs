#[tokio::main]
async fn main() -> anyhow::Result<()> {
    redis_provider::run().await
}
