#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ticker_provider::run().await
}
