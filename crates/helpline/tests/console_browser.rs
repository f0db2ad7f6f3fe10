//! The console end to end in a real browser (Debian's chromium, driven by playwright-core
//! from `crates/console/web/tests/inbox.mjs`): a WhatsApp customer (the simulator) goes
//! through the bot's intake; agent Anna, signed in to the console, gets the offer (which
//! supervisor Sabine, in a second browser, fails to accept), accepts, sees the summary,
//! the serial number and the 24-hour window, replies and adds an internal note; the
//! customer gets the reply and never the note, answers, and Anna sees the answer live
//! (and the customer's markup and script as text, never run) and resolves, which starts
//! the rating; the customer rates 5, and Sabine's figures show it without a reload.
//! axe-core finds no serious or critical violation on any page; the page logs no error.
//!
//! scripts/test installs chromium and the npm packages; run alone, the test says what
//! is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use std::time::{Duration, Instant};

use helpline_domain::Channel;
use helpline_testkit::{NatsServer, Simulator};
use process::{KillOnDrop, Ports, helpline, passwd, wait_for};
use tokio::io::{AsyncBufReadExt, BufReader};

const CUSTOMER: &str = "4915112345678";
/// The same customer's second phone, from which they wrote first; Anna links the two.
const SECOND_PHONE: &str = "4915199887766";

/// What the customer writes after Anna's reply: markup and script the page must show as
/// text and never run.
const XSS_PAYLOADS: [&str; 6] = [
    "<script>alert('xss-1')</script>",
    "<img src=x onerror=\"alert('xss-2')\">",
    "\"><svg onload=alert('xss-3')>",
    "<a href=\"javascript:alert('xss-4')\">Rechnung</a>",
    "<iframe src=\"javascript:alert('xss-5')\"></iframe>",
    "{{constructor.constructor('alert(6)')()}} ${alert('xss-7')}",
];
const PASSWORD: &str = "anna's console password";
/// A red 8×8 PNG: the photo the customer sends.
const PHOTO: &str = "89504e470d0a1a0a0000000d49484452000000080000000808020000004b6d29dc0000001149444154789c63b860608015310c2d0900da7b4c01eb962a9a0000000049454e44ae426082";

struct Customer<'a> {
    sim: &'a Simulator,
    ingress: String,
}

impl Customer<'_> {
    fn received(&self) -> Vec<String> {
        self.sim
            .received(Channel::WhatsApp, CUSTOMER)
            .into_iter()
            .map(|received| received.text.unwrap_or_default())
            .collect()
    }

    /// Writes `text`: taken, and nothing waited for.
    async fn writes(&self, text: &str) {
        let webhook = self.sim.webhook(Channel::WhatsApp, CUSTOMER, text);
        let answer = self.sim.deliver(&self.ingress, &webhook).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
    }

    /// Writes `text` and waits until helpline answered with something more.
    async fn says(&self, text: &str) {
        let before = self.received().len();
        let webhook = self.sim.webhook(Channel::WhatsApp, CUSTOMER, text);
        let answer = self.sim.deliver(&self.ingress, &webhook).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        self.gets(|received| received.len() > before, text).await;
    }

    async fn gets(&self, done: impl Fn(&[String]) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&self.received()) {
            assert!(
                Instant::now() < deadline,
                "the customer waited in vain after {what:?}; got {:?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anna_takes_a_whatsapp_customer_through_the_console_in_a_real_browser() {
    let nats = NatsServer::start().await.unwrap();
    let sim = Simulator::start(Default::default()).await.unwrap();
    let (
        mut command,
        Ports {
            http, ops, console, ..
        },
    ) = helpline("all", &nats.url());
    let whatsapp = &sim.helpline_channels()["whatsapp"];
    for key in [
        "app_secret",
        "verify_token",
        "access_token",
        "phone_number_id",
        "api_base_url",
    ] {
        let value = whatsapp[key].as_str().unwrap();
        command.env(
            format!("HELPLINE_CHANNELS__WHATSAPP__{}", key.to_ascii_uppercase()),
            value,
        );
    }
    // The simulator serves the providers' media on loopback.
    command.env(
        "HELPLINE_INGRESS__MEDIA_HOSTS__WHATSAPP",
        format!("[\"{}\"]", sim.base_url()),
    );
    let _helpline = KillOnDrop::quiet(&mut command);
    wait_for(ops, "/readyz", 200).await;
    for agent in ["anna", "sabine"] {
        let set = passwd(&nats.url(), agent, PASSWORD);
        assert!(set.status.success(), "{set:?}");
    }

    let (mut browser, screenshots) = process::browser(
        "tests/inbox.mjs",
        console,
        PASSWORD,
        &[(
            "XSS_PAYLOADS",
            serde_json::to_string(&XSS_PAYLOADS).unwrap(),
        )],
    );
    let mut said = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut heard = Vec::new();
    let mut until = async |line: &str| {
        let found = tokio::time::timeout(Duration::from_secs(90), async {
            while let Some(next) = said.next_line().await.unwrap() {
                heard.push(next.clone());
                if next == line {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "the browser never said {line}; it said {heard:?}"
        );
    };

    until("READY").await;
    let customer = Customer {
        sim: &sim,
        ingress: format!("http://127.0.0.1:{http}"),
    };
    // Earlier, from the second phone: one message, a ticket of its own.
    let earlier = sim.webhook(
        Channel::WhatsApp,
        SECOND_PHONE,
        "Hallo, ich schreibe vom Zweithandy",
    );
    let answer = sim.deliver(&customer.ingress, &earlier).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    customer
        .says("Hallo, ich brauche Hilfe mit meinem MateBook X Pro")
        .await;
    customer.says("2NS7N19B12345678").await;
    customer
        .says("Ich kann mich seit dem Update nicht mehr anmelden")
        .await;
    until("REPLIED").await;
    customer
        .gets(
            |received| received.iter().any(|text| text.contains("hier ist Anna")),
            "Anna's reply",
        )
        .await;
    // A photo of the problem, which Anna opens in the conversation.
    let photo = sim.add_media(hex::decode(PHOTO).unwrap(), "image/png");
    let webhook = sim.webhook_image(Channel::WhatsApp, CUSTOMER, &photo, Some("Foto vom Fehler"));
    let answer = sim.deliver(&customer.ingress, &webhook).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    for payload in XSS_PAYLOADS {
        customer.writes(payload).await;
    }
    customer
        .gets(
            |received| {
                received
                    .iter()
                    .any(|text| text.contains("Kostenvoranschlag"))
            },
            "Anna's canned reply",
        )
        .await;
    customer.says("Danke, jetzt klappt es wieder!").await;
    until("TRANSFERRED").await;
    until("RESOLVED").await;
    // Resolving starts the rating; the customer gives 5 and the supervisor sees it.
    customer
        .gets(
            |received| {
                received
                    .iter()
                    .any(|text| text.contains("bewerten Sie uns von 1"))
            },
            "the rating prompt",
        )
        .await;
    customer.says("5 super, danke!").await;
    until("CSAT").await;
    let status = tokio::time::timeout(Duration::from_secs(30), browser.wait())
        .await
        .unwrap()
        .unwrap();
    let rest: Vec<String> = {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = said.next_line().await {
            rest.push(line);
        }
        rest
    };
    assert!(status.success(), "the browser found problems: {rest:?}");
    // Two agents, one offer: Sabine's Accept of the ticket offered to Anna was refused.
    let stolen = heard
        .iter()
        .find_map(|line| line.strip_prefix("SABINE_ACCEPT "))
        .unwrap_or("never tried");
    assert!(
        ["5", "7", "9"].contains(&stolen),
        "Sabine's Accept of Anna's offer answered grpc-status {stolen}"
    );
    // The internal note never reached the customer.
    let received = customer.received();
    assert!(
        !received.iter().any(|text| text.contains("Garantie")),
        "the internal note reached the customer: {received:?}"
    );
    for page in [
        "console-inbox.png",
        "console-conversation.png",
        "console-supervisor.png",
    ] {
        assert!(screenshots.join(page).exists(), "no screenshot {page}");
    }
}
