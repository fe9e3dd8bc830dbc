#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kafka_provider::run().await
}
