//! The web-chat widget end to end in a real browser (Debian's chromium, driven by
//! playwright-core from `crates/console/web/tests/widget.mjs`): a customer on a service
//! page of another origin writes through the widget on a phone-sized screen, goes through
//! the bot's intake, and is served by agent Anna in the console; the server is killed and
//! started again while the customer writes, and nothing is lost or shown twice; Anna
//! resolves, the customer gives 5 stars in the widget, and supervisor Sabine's CSAT shows
//! it live. A second customer's widget shows nothing of the first's.
//!
//! scripts/test installs chromium and the npm packages; run alone, the test says what
//! is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;
mod widget_client;

use std::time::Duration;

use helpline_testkit::NatsServer;
use process::{KillOnDrop, Ports, helpline, passwd, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use widget_client::serve_widget;

const PASSWORD: &str = "anna's console password";

/// What the customer writes through the widget: shown as text, never run.
const XSS_PAYLOADS: [&str; 4] = [
    "<script>alert('xss-1')</script>",
    "<img src=x onerror=\"alert('xss-2')\">",
    "\"><svg onload=alert('xss-3')>",
    "<a href=\"javascript:alert('xss-4')\">Rechnung</a>",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_chats_through_the_widget_across_a_server_restart_and_rates_anna() {
    let nats = NatsServer::start().await.unwrap();
    let (mut command, Ports { ops, console, .. }) = helpline("all", &nats.url());
    serve_widget(&mut command, console);
    let mut server = Some(KillOnDrop::quiet(&mut command));
    wait_for(ops, "/readyz", 200).await;
    for agent in ["anna", "sabine"] {
        let set = passwd(&nats.url(), agent, PASSWORD);
        assert!(set.status.success(), "{set:?}");
    }

    let (mut browser, screenshots) = process::browser(
        "tests/widget.mjs",
        console,
        PASSWORD,
        &[(
            "XSS_PAYLOADS",
            serde_json::to_string(&XSS_PAYLOADS).unwrap(),
        )],
    );
    let mut told = browser.stdin.take().unwrap();
    let mut said = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut heard = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(240), async {
        while let Some(line) = said.next_line().await.unwrap() {
            heard.push(line.clone());
            match line.as_str() {
                "RESTART" => {
                    // A crash, not a shutdown: SIGKILL; the customer writes meanwhile.
                    server = None;
                    told.write_all(b"DOWN\n").await.unwrap();
                }
                "TYPED" => {
                    server = Some(KillOnDrop::quiet(&mut command));
                    wait_for(ops, "/readyz", 200).await;
                    told.write_all(b"UP\n").await.unwrap();
                }
                _ => {}
            }
        }
        browser.wait().await.unwrap()
    })
    .await;
    let status =
        outcome.unwrap_or_else(|_| panic!("the browser never finished; it said {heard:?}"));
    assert!(status.success(), "the browser found problems: {heard:?}");
    for step in ["INTAKE", "RESTARTED", "CSAT", "ISOLATED"] {
        assert!(
            heard.iter().any(|line| line == step),
            "no {step} in {heard:?}"
        );
    }
    assert!(
        screenshots.join("console-widget.png").exists(),
        "no screenshot of the widget"
    );
    assert!(server.is_some(), "the server was not started again");
}
