//! Headless Chromium driven through ChromeDriver (both Debian's packages: `cargo xtask test` and
//! `cargo xtask bench` install them and name them in `PM_CHROMIUM` and `PM_CHROMEDRIVER`). Each
//! session has its own ChromeDriver on a free loopback port and its own empty profile, so a
//! session starts with a cold cache; both go when the session is dropped.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

pub use fantoccini;

/// How long ChromeDriver may take to give a session.
const STARTUP: Duration = Duration::from_secs(30);

pub struct Session {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A session not ended (a test that failed) leaves Chromium running without its driver:
        // its processes are the ones started with this session's profile.
        // (`--` first: the pattern itself starts with dashes.)
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", "--"])
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Session {
    /// A new browser, its window `width` × `height`, its console log kept.
    pub async fn start(width: u32, height: u32) -> Result<Self, String> {
        let chromedriver = std::env::var("PM_CHROMEDRIVER").unwrap_or("chromedriver".into());
        let chromium = std::env::var("PM_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let driver = Command::new(&chromedriver)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {chromedriver}: {e}"))?;
        let profile =
            std::env::temp_dir().join(format!("pm-browser-{}-{port}", std::process::id()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                // As root on a machine whose only network is loopback: no sandbox, no GPU, and
                // none of the browser's own background traffic.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--lang=en-US", format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display())],
            }),
        );
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + STARTUP;
        let session = Session {
            // Replaced below; a Session owns the driver from the start so a failure kills it.
            client: loop {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(connector)
                    .capabilities(capabilities.clone())
                    .connect(&webdriver)
                    .await
                {
                    Ok(client) => break client,
                    // ChromeDriver still starting (connection refused): ask again.
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => {
                        let mut driver = driver;
                        let _ = driver.kill();
                        return Err(format!("no browser session from {chromedriver}: {e}"));
                    }
                }
            },
            driver,
            profile,
        };
        session.client.set_window_size(width, height).await.ok();
        Ok(session)
    }

    /// Closes the browser (ChromeDriver ends Chromium), then the driver.
    pub async fn end(self) {
        let _ = self.client.clone().close().await;
    }

    /// The browser's console log since the last call: (level, message) pairs.
    pub async fn console_log(&self) -> Result<Vec<(String, String)>, String> {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .map_err(|e| format!("reading the browser's log: {e}"))?;
        Ok(log
            .as_array()
            .into_iter()
            .flatten()
            .map(|entry| (text(&entry["level"]), text(&entry["message"])))
            .collect())
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// Chromium's console log (ChromeDriver's `se/log`, kept by `goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}
