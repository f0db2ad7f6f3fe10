//! The channel simulator over real HTTP: sends are recorded or refused as each provider
//! would, faults answer in the provider's shape and are used up, and the webhooks it builds
//! verify and parse with helpline's own channel adapters.
//!
//! Nothing here installs a rustls crypto provider: every request goes through the
//! simulator's own client, which proves plain HTTP needs none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use helpline_channels::apple::{AppleAdapter, AppleConfig};
use helpline_channels::messenger::{MessengerAdapter, MessengerConfig};
use helpline_channels::telegram::{TelegramAdapter, TelegramConfig};
use helpline_channels::viber::{ViberAdapter, ViberConfig};
use helpline_channels::web::{WebAdapter, WebConfig};
use helpline_channels::whatsapp::{WhatsAppAdapter, WhatsAppConfig};
use helpline_channels::{
    Inbound, InboundAdapter, InboundContent, ReceiptStatus, WebhookError, WebhookRequest,
};
use helpline_domain::{Channel, MediaKind};
use helpline_testkit::simulator::{Fault, ReceiptKind, Simulator, SimulatorConfig, Webhook};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const ODD_TEXT: &str = "👩🏽‍💻 שלום e\u{301} 𝄞";

const CHANNELS: [Channel; 5] = [
    Channel::WhatsApp,
    Channel::Messenger,
    Channel::Telegram,
    Channel::Viber,
    Channel::WebChat,
];

/// Every channel of the registry: what the webhook tests run on. (The send tests above
/// speak each provider's API by hand; Apple's send is tested through its adapter.)
const ALL: &[Channel] = helpline_channels::CHANNELS;

/// A customer address that fits the channel.
fn customer(channel: Channel) -> &'static str {
    match channel {
        Channel::WhatsApp => "4915112345678",
        Channel::Messenger => "6543210987654321",
        Channel::Telegram => "587236105",
        Channel::Viber => "01234567890A=",
        Channel::AppleMessages => "urn:mbid:AQAAY-sim-customer",
        _ => "sess_9f8e7d6c5b4a",
    }
}

async fn start() -> Simulator {
    Simulator::start(SimulatorConfig::default()).await.unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Auth {
    Right,
    Wrong,
    Missing,
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

/// A text send as helpline's egress makes it, per `CHANNELS.md`.
async fn try_send(
    sim: &Simulator,
    channel: Channel,
    customer: &str,
    text: &str,
    auth: Auth,
    timeout: Duration,
) -> Result<Reply, reqwest::Error> {
    let config = sim.config();
    let api = sim.api_base_url(channel);
    let client = sim.http_client();
    let pick = |right: &str| match auth {
        Auth::Right => Some(right.to_owned()),
        Auth::Wrong => Some(format!("{right}-wrong")),
        Auth::Missing => None,
    };
    let request = match channel {
        Channel::WhatsApp => {
            let url = format!("{api}/{}/messages", config.whatsapp.phone_number_id);
            let body = json!({
                "messaging_product": "whatsapp", "recipient_type": "individual", "to": customer,
                "type": "text", "text": { "preview_url": false, "body": text },
            });
            let request = client.post(url).json(&body);
            match pick(&config.whatsapp.access_token) {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
        }
        Channel::Messenger => {
            let url = match pick(&config.messenger.page_access_token) {
                Some(token) => format!("{api}/me/messages?access_token={token}"),
                None => format!("{api}/me/messages"),
            };
            let body = json!({
                "recipient": { "id": customer }, "messaging_type": "RESPONSE",
                "message": { "text": text },
            });
            client.post(url).json(&body)
        }
        Channel::Telegram => {
            let token = pick(&config.telegram.bot_token).unwrap_or_default();
            let chat: i64 = sim.customer_address(channel, customer).parse().unwrap();
            client
                .post(format!("{api}/bot{token}/sendMessage"))
                .json(&json!({ "chat_id": chat, "text": text }))
        }
        Channel::Viber => {
            let body = json!({
                "receiver": customer, "min_api_version": 1, "sender": { "name": "Helpline" },
                "tracking_data": "ticket-4711", "type": "text", "text": text,
            });
            let request = client.post(format!("{api}/send_message")).json(&body);
            match pick(&config.viber.auth_token) {
                Some(token) => request.header("X-Viber-Auth-Token", token),
                None => request,
            }
        }
        _ => {
            let body = serde_json::to_vec(&json!({
                "version": 1, "event_id": format!("evt_{}", text.len()), "type": "message",
                "session_id": customer,
                "message": { "id": "out_1", "text": text, "quick_replies": ["1", "2"] },
            }))
            .unwrap();
            let request = client
                .post(api)
                .header("content-type", "application/json")
                .body(body.clone());
            match pick(&config.web.shared_secret) {
                Some(secret) => request.header(
                    "X-Helpline-Signature",
                    format!("sha256={}", hmac_hex(&secret, &body)),
                ),
                None => request,
            }
        }
    };
    let response = request.timeout(timeout).send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await?;
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        headers,
        json,
    })
}

async fn send(sim: &Simulator, channel: Channel, text: &str, auth: Auth) -> Reply {
    try_send(
        sim,
        channel,
        customer(channel),
        text,
        auth,
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

fn hmac_hex(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether the reply is the provider's success.
#[track_caller]
fn assert_success(channel: Channel, reply: &Reply) {
    assert_eq!(reply.status, 200, "{channel:?}: {reply:?}");
    let json = &reply.json;
    match channel {
        Channel::WhatsApp => {
            assert_eq!(json["messaging_product"], "whatsapp");
            assert_eq!(json["contacts"][0]["wa_id"], customer(channel));
            assert!(
                json["messages"][0]["id"]
                    .as_str()
                    .unwrap()
                    .starts_with("wamid.")
            );
        }
        Channel::Messenger => {
            assert_eq!(json["recipient_id"], customer(channel));
            assert!(json["message_id"].as_str().unwrap().starts_with("m_"));
        }
        Channel::Telegram => {
            assert_eq!(json["ok"], true);
            assert!(json["result"]["message_id"].as_i64().is_some());
            assert_eq!(json["result"]["chat"]["id"], 587236105);
        }
        Channel::Viber => {
            assert_eq!(json["status"], 0);
            assert_eq!(json["status_message"], "ok");
            assert!(json["message_token"].as_u64().unwrap() > 1 << 53);
        }
        _ => assert_eq!(json, &json!({ "ok": true })),
    }
}

/// The id the provider answered with, as `Received::provider_message_id` holds it.
fn answered_id(channel: Channel, reply: &Reply) -> String {
    let json = &reply.json;
    match channel {
        Channel::WhatsApp => json["messages"][0]["id"].as_str().unwrap().to_owned(),
        Channel::Messenger => json["message_id"].as_str().unwrap().to_owned(),
        Channel::Telegram => json["result"]["message_id"].to_string(),
        Channel::Viber => json["message_token"].to_string(),
        _ => "out_1".to_owned(),
    }
}

#[tokio::test]
async fn a_send_with_the_right_credentials_is_recorded_with_its_text() {
    let sim = start().await;
    for channel in CHANNELS {
        let reply = send(&sim, channel, ODD_TEXT, Auth::Right).await;
        assert_success(channel, &reply);
        let received = sim.received(channel, customer(channel));
        assert_eq!(received.len(), 1, "{channel:?}");
        let got = &received[0];
        assert_eq!(got.channel, channel);
        assert_eq!(got.customer, customer(channel));
        assert_eq!(got.text.as_deref(), Some(ODD_TEXT), "{channel:?}");
        assert_eq!(got.provider_message_id, answered_id(channel, &reply));
        assert_eq!(got.template, None);
        let expected_key = (channel == Channel::WebChat).then(|| format!("evt_{}", ODD_TEXT.len()));
        assert_eq!(got.idempotency_key, expected_key);
        assert_eq!(sim.send_attempts(channel), 1);
    }
    assert_eq!(sim.all_received().len(), 5);
    assert!(sim.received(Channel::WhatsApp, "someone-else").is_empty());
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused_in_the_providers_shape_and_not_recorded() {
    let sim = start().await;
    for channel in CHANNELS {
        for auth in [Auth::Wrong, Auth::Missing] {
            let reply = send(&sim, channel, "hallo", auth).await;
            let json = &reply.json;
            match channel {
                Channel::WhatsApp | Channel::Messenger => {
                    assert_eq!(reply.status, 401, "{channel:?} {auth:?}");
                    assert_eq!(json["error"]["type"], "OAuthException");
                    let code = if auth == Auth::Wrong { 190 } else { 104 };
                    assert_eq!(json["error"]["code"], code, "{channel:?} {auth:?}");
                    assert!(json["error"]["fbtrace_id"].is_string());
                }
                Channel::Telegram => {
                    assert_eq!(reply.status, 401);
                    assert_eq!(
                        json,
                        &json!({ "ok": false, "error_code": 401, "description": "Unauthorized" })
                    );
                }
                // Viber answers every application error with HTTP 200.
                Channel::Viber => {
                    assert_eq!(reply.status, 200);
                    assert_eq!(json["status"], 2);
                    assert_eq!(json["status_message"], "invalidAuthToken");
                }
                _ => {
                    assert_eq!(reply.status, 401);
                    assert_eq!(json["ok"], false);
                }
            }
        }
        assert!(
            sim.received(channel, customer(channel)).is_empty(),
            "{channel:?}"
        );
        assert_eq!(sim.send_attempts(channel), 2);
    }
}

#[tokio::test]
async fn a_server_error_answers_500_and_is_used_up_after_its_times() {
    let sim = start().await;
    for channel in CHANNELS {
        sim.inject(channel, Fault::ServerError { times: 2 });
        for _ in 0..2 {
            let reply = send(&sim, channel, "hallo", Auth::Right).await;
            assert_eq!(reply.status, 500, "{channel:?}");
            match channel {
                Channel::WhatsApp | Channel::Messenger => {
                    assert_eq!(reply.json["error"]["code"], 2);
                    assert_eq!(reply.json["error"]["is_transient"], true);
                }
                Channel::Telegram => assert_eq!(reply.json["error_code"], 500),
                Channel::Viber => assert_eq!(reply.json, Value::Null, "a bare 500"),
                _ => assert_eq!(reply.json["ok"], false),
            }
            assert!(sim.received(channel, customer(channel)).is_empty());
        }
        assert_success(channel, &send(&sim, channel, "hallo", Auth::Right).await);
        assert_eq!(sim.received(channel, customer(channel)).len(), 1);
        assert_eq!(sim.send_attempts(channel), 3);
    }
}

#[tokio::test]
async fn rate_limiting_answers_as_each_provider_does() {
    let sim = start().await;
    for channel in CHANNELS {
        sim.inject(
            channel,
            Fault::RateLimited {
                times: 1,
                retry_after_secs: 7,
            },
        );
        let reply = send(&sim, channel, "hallo", Auth::Right).await;
        let retry_after = reply
            .headers
            .get("retry-after")
            .map(|value| value.to_str().unwrap());
        let json = &reply.json;
        match channel {
            Channel::WhatsApp => {
                assert_eq!((reply.status, retry_after), (429, Some("7")));
                assert_eq!(json["error"]["code"], 130429);
                assert_eq!(json["error"]["error_data"]["messaging_product"], "whatsapp");
            }
            Channel::Messenger => {
                assert_eq!((reply.status, retry_after), (429, Some("7")));
                assert_eq!(json["error"]["code"], 613);
            }
            Channel::Telegram => {
                assert_eq!((reply.status, retry_after), (429, None));
                assert_eq!(
                    json,
                    &json!({
                        "ok": false, "error_code": 429,
                        "description": "Too Many Requests: retry after 7",
                        "parameters": { "retry_after": 7 },
                    })
                );
            }
            Channel::Viber => {
                assert_eq!((reply.status, retry_after), (200, None));
                assert_eq!(json["status"], 12);
                assert_eq!(json["status_message"], "tooManyRequests");
            }
            _ => {
                assert_eq!((reply.status, retry_after), (429, Some("7")));
                assert_eq!(json["ok"], false);
            }
        }
        assert!(sim.received(channel, customer(channel)).is_empty());
        assert_success(channel, &send(&sim, channel, "hallo", Auth::Right).await);
        assert_eq!(sim.send_attempts(channel), 2);
    }
}

#[tokio::test]
async fn a_slow_acceptance_delivers_the_message_and_answers_success_late() {
    let sim = start().await;
    let delay = Duration::from_millis(600);
    for channel in CHANNELS {
        sim.accept_slowly(channel, 2, delay);
        // The sender gives up first; the customer has the message all the same.
        let short = Duration::from_millis(100);
        // Texts of different lengths: the web chat's event_id is derived from it.
        let error = try_send(&sim, channel, customer(channel), "eins", Auth::Right, short)
            .await
            .unwrap_err();
        assert!(error.is_timeout(), "{channel:?}: {error}");
        // A sender that waits gets the provider's success.
        let long = Duration::from_secs(10);
        let reply = try_send(&sim, channel, customer(channel), "zwei!", Auth::Right, long)
            .await
            .unwrap();
        assert_success(channel, &reply);
        // Used up: the next send is answered at once.
        assert_success(channel, &send(&sim, channel, "drei!!", Auth::Right).await);
        let texts: Vec<Option<String>> = sim
            .received(channel, customer(channel))
            .into_iter()
            .map(|r| r.text)
            .collect();
        assert_eq!(texts.len(), 3, "{channel:?}: {texts:?}");
    }
    assert_eq!(sim.faults_served().get("slow_accept"), Some(&10));
}

#[tokio::test]
async fn a_timeout_answers_only_after_its_delay_and_records_nothing() {
    let sim = start().await;
    let delay = Duration::from_millis(600);
    for channel in CHANNELS {
        sim.inject(channel, Fault::Timeout { times: 2, delay });
        let short = Duration::from_millis(100);
        let error = try_send(
            &sim,
            channel,
            customer(channel),
            "hallo",
            Auth::Right,
            short,
        )
        .await
        .unwrap_err();
        assert!(error.is_timeout(), "{channel:?}: {error}");

        let started = Instant::now();
        let long = Duration::from_secs(10);
        let reply = try_send(&sim, channel, customer(channel), "hallo", Auth::Right, long)
            .await
            .unwrap();
        assert!(started.elapsed() >= delay);
        assert_eq!(reply.status, 500, "{channel:?}");

        assert_success(channel, &send(&sim, channel, "hallo", Auth::Right).await);
        assert_eq!(
            sim.received(channel, customer(channel)).len(),
            1,
            "{channel:?}"
        );
        assert_eq!(sim.send_attempts(channel), 3);
    }
}

#[tokio::test]
async fn a_hung_whatsapp_customer_holds_only_their_own_sends_until_faults_are_cleared() {
    let sim = Arc::new(start().await);
    let hung = customer(Channel::WhatsApp);
    let other = "4915187654321";
    sim.hang_whatsapp_sends_to(hung);
    let short = Duration::from_millis(300);
    let error = try_send(&sim, Channel::WhatsApp, hung, "hallo", Auth::Right, short)
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    let reply = try_send(&sim, Channel::WhatsApp, other, "hallo", Auth::Right, short)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.json);

    let held = tokio::spawn({
        let sim = sim.clone();
        async move {
            let long = Duration::from_secs(10);
            try_send(&sim, Channel::WhatsApp, hung, "hallo", Auth::Right, long).await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sim.received(Channel::WhatsApp, hung).is_empty());
    sim.clear_faults();
    assert_success(Channel::WhatsApp, &held.await.unwrap().unwrap());
    assert_eq!(sim.received(Channel::WhatsApp, hung).len(), 1);
    assert_eq!(sim.received(Channel::WhatsApp, other).len(), 1);
}

#[tokio::test]
async fn a_rejection_is_a_permanent_error_in_the_providers_shape() {
    let sim = start().await;
    for channel in CHANNELS {
        let fault = Fault::Reject {
            times: 1,
            status: 400,
            code: 131026,
            message: "Message Undeliverable.".to_owned(),
        };
        sim.inject(channel, fault);
        let reply = send(&sim, channel, "hallo", Auth::Right).await;
        let json = &reply.json;
        match channel {
            Channel::WhatsApp | Channel::Messenger => {
                assert_eq!(reply.status, 400);
                assert_eq!(json["error"]["code"], 131026);
                assert_eq!(json["error"]["message"], "Message Undeliverable.");
                assert_eq!(json["error"]["type"], "OAuthException");
                assert!(json["error"]["fbtrace_id"].is_string());
            }
            Channel::Telegram => {
                assert_eq!(reply.status, 400);
                assert_eq!(json["ok"], false);
                assert_eq!(json["error_code"], 131026);
                assert_eq!(json["description"], "Message Undeliverable.");
            }
            Channel::Viber => {
                assert_eq!(reply.status, 200);
                assert_eq!(json["status"], 131026);
            }
            _ => {
                assert_eq!(reply.status, 400);
                assert_eq!(json["code"], 131026);
            }
        }
        assert!(sim.received(channel, customer(channel)).is_empty());
        assert_success(channel, &send(&sim, channel, "hallo", Auth::Right).await);
    }
}

#[tokio::test]
async fn outside_the_window_free_text_is_refused_but_a_whatsapp_template_goes_through() {
    let sim = start().await;
    for channel in CHANNELS {
        sim.inject(channel, Fault::CustomerOutsideWindow { times: 1 });
        let reply = send(&sim, channel, "hallo", Auth::Right).await;
        let json = &reply.json;
        match channel {
            Channel::WhatsApp => {
                assert_eq!(reply.status, 400);
                assert_eq!(json["error"]["code"], 131047);
                assert_eq!(json["error"]["message"], "(#131047) Re-engagement message");
            }
            Channel::Messenger => {
                assert_eq!(reply.status, 400);
                assert_eq!(json["error"]["code"], 10);
                assert_eq!(json["error"]["error_subcode"], 2018278);
            }
            Channel::Telegram => {
                assert_eq!((reply.status, &json["error_code"]), (403, &json!(403)))
            }
            Channel::Viber => assert_eq!((reply.status, &json["status"]), (200, &json!(6))),
            _ => assert_eq!(reply.status, 410),
        }
        assert!(sim.received(channel, customer(channel)).is_empty());
    }

    sim.inject(Channel::WhatsApp, Fault::CustomerOutsideWindow { times: 1 });
    let config = sim.config();
    let template = json!({
        "messaging_product": "whatsapp", "to": "4915112345678", "type": "template",
        "template": {
            "name": "ticket_update", "language": { "policy": "deterministic", "code": "en_US" },
            "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "2NS7" }] }],
        },
    });
    let url = format!(
        "{}/{}/messages",
        sim.api_base_url(Channel::WhatsApp),
        config.whatsapp.phone_number_id
    );
    let response = sim
        .http_client()
        .post(url)
        .bearer_auth(&config.whatsapp.access_token)
        .json(&template)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["messages"][0]["message_status"], "accepted");
    let received = sim.received(Channel::WhatsApp, "+4915112345678");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].template.as_deref(), Some("ticket_update"));
    assert_eq!(received[0].text, None);

    // The template did not use the fault up: the next free text still meets it.
    let reply = send(&sim, Channel::WhatsApp, "hallo", Auth::Right).await;
    assert_eq!(reply.json["error"]["code"], 131047);
}

#[tokio::test]
async fn faults_queue_per_channel_in_order_and_can_be_cleared() {
    let sim = start().await;
    let channel = Channel::Telegram;
    sim.inject(channel, Fault::ServerError { times: 1 });
    sim.inject(
        channel,
        Fault::RateLimited {
            times: 1,
            retry_after_secs: 1,
        },
    );
    sim.inject(Channel::Viber, Fault::ServerError { times: 5 });
    assert_eq!(send(&sim, channel, "a", Auth::Right).await.status, 500);
    assert_eq!(send(&sim, channel, "b", Auth::Right).await.status, 429);
    assert_eq!(send(&sim, channel, "c", Auth::Right).await.status, 200);

    sim.inject(channel, Fault::ServerError { times: 3 });
    sim.clear_faults();
    assert_eq!(send(&sim, channel, "d", Auth::Right).await.status, 200);
    assert_success(
        Channel::Viber,
        &send(&sim, Channel::Viber, "e", Auth::Right).await,
    );
    let texts: Vec<_> = sim
        .received(channel, customer(channel))
        .into_iter()
        .map(|received| received.text.unwrap())
        .collect();
    assert_eq!(texts, ["c", "d"]);
    assert_eq!(sim.send_attempts(channel), 4);
}

#[tokio::test]
async fn the_web_callback_records_a_repeated_event_id_once() {
    let sim = start().await;
    for _ in 0..3 {
        let reply = send(&sim, Channel::WebChat, "same event", Auth::Right).await;
        assert_success(Channel::WebChat, &reply);
    }
    assert_eq!(
        sim.received(Channel::WebChat, customer(Channel::WebChat))
            .len(),
        1
    );
    // Another event_id (derived from the text length in `try_send`) is another message.
    send(&sim, Channel::WebChat, "another event", Auth::Right).await;
    assert_eq!(
        sim.received(Channel::WebChat, customer(Channel::WebChat))
            .len(),
        2
    );
    assert_eq!(sim.send_attempts(Channel::WebChat), 4);
}

#[tokio::test]
async fn a_faulted_web_callback_does_not_count_as_seen() {
    let sim = start().await;
    sim.inject(Channel::WebChat, Fault::ServerError { times: 1 });
    assert_eq!(
        send(&sim, Channel::WebChat, "retried", Auth::Right)
            .await
            .status,
        500
    );
    assert_success(
        Channel::WebChat,
        &send(&sim, Channel::WebChat, "retried", Auth::Right).await,
    );
    assert_eq!(
        sim.received(Channel::WebChat, customer(Channel::WebChat))
            .len(),
        1
    );
}

fn adapter(sim: &Simulator, channel: Channel) -> Box<dyn InboundAdapter> {
    let config = sim.config();
    match channel {
        Channel::WhatsApp => Box::new(
            WhatsAppAdapter::new(WhatsAppConfig {
                app_secret: config.whatsapp.app_secret.as_str().into(),
                verify_token: config.whatsapp.verify_token.as_str().into(),
                ..Default::default()
            })
            .unwrap(),
        ),
        Channel::Messenger => Box::new(
            MessengerAdapter::new(MessengerConfig {
                app_secret: config.messenger.app_secret.as_str().into(),
                verify_token: config.messenger.verify_token.as_str().into(),
                ..Default::default()
            })
            .unwrap(),
        ),
        Channel::Telegram => Box::new(
            TelegramAdapter::new(TelegramConfig {
                secret_token: config.telegram.secret_token.as_str().into(),
                ..Default::default()
            })
            .unwrap(),
        ),
        Channel::Viber => Box::new(
            ViberAdapter::new(ViberConfig {
                auth_token: config.viber.auth_token.as_str().into(),
                ..Default::default()
            })
            .unwrap(),
        ),
        Channel::AppleMessages => Box::new(
            AppleAdapter::new(AppleConfig {
                msp_id: config.apple.msp_id.clone(),
                secret: config.apple.secret_base64.as_str().into(),
                business_id: config.apple.business_id.clone(),
                ..Default::default()
            })
            .unwrap(),
        ),
        _ => Box::new(
            WebAdapter::new(WebConfig {
                shared_secret: config.web.shared_secret.as_str().into(),
                ..Default::default()
            })
            .unwrap(),
        ),
    }
}

/// Runs a webhook through helpline's ingress adapter for its channel.
fn ingest(sim: &Simulator, webhook: &Webhook) -> Result<Vec<Inbound>, WebhookError> {
    assert_eq!(
        webhook.path,
        format!("/webhooks/{}", webhook.channel.as_str())
    );
    let mut headers = http::HeaderMap::new();
    for (name, value) in &webhook.headers {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let request = WebhookRequest {
        headers: &headers,
        query: webhook.query.as_deref(),
        body: &webhook.body,
    };
    adapter(sim, webhook.channel).receive(&request)
}

#[tokio::test]
async fn text_webhooks_verify_and_parse_into_the_exact_text() {
    let sim = start().await;
    for &channel in ALL {
        let customer = customer(channel);
        let webhook = sim.webhook(channel, customer, ODD_TEXT);
        assert_eq!(webhook.customer, customer);
        let inbound = ingest(&sim, &webhook).unwrap();
        let [Inbound::Message(message)] = inbound.as_slice() else {
            panic!("{channel:?}: {inbound:?}");
        };
        assert_eq!(message.provider_message_id, webhook.provider_message_id);
        assert_eq!(message.contact.expose(), customer, "{channel:?}");
        // Apple's events carry no time.
        assert_eq!(
            message.sent_at_unix.is_some(),
            channel != Channel::AppleMessages,
            "{channel:?}"
        );
        let InboundContent::Text(text) = &message.content else {
            panic!("{channel:?}: {:?}", message.content);
        };
        assert_eq!(text.expose(), ODD_TEXT, "{channel:?}");
        let expected_account = match channel {
            Channel::WhatsApp => Some(sim.config().whatsapp.phone_number_id.clone()),
            Channel::Messenger => Some(sim.config().messenger.page_id.clone()),
            Channel::AppleMessages => Some(sim.config().apple.business_id.clone()),
            _ => None,
        };
        assert_eq!(message.account, expected_account, "{channel:?}");

        let again = sim.webhook(channel, customer, ODD_TEXT);
        assert_ne!(
            again.provider_message_id, webhook.provider_message_id,
            "fresh ids"
        );
    }
}

#[tokio::test]
async fn meta_webhooks_escape_non_ascii_as_meta_does() {
    let sim = start().await;
    for channel in [Channel::WhatsApp, Channel::Messenger] {
        let webhook = sim.webhook(channel, customer(channel), ODD_TEXT);
        assert!(webhook.body.is_ascii(), "{channel:?}");
        let body = String::from_utf8(webhook.body.clone()).unwrap();
        assert!(
            body.contains(r"\ud83d\udc69\ud83c\udffd\u200d\ud83d\udcbb"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn tampered_or_wrongly_signed_webhooks_are_refused() {
    let sim = start().await;
    for &channel in ALL {
        let webhook = sim.webhook(channel, customer(channel), "hallo");
        for forged in [webhook.tampered(), webhook.with_wrong_signature()] {
            let refused = ingest(&sim, &forged).unwrap_err();
            assert!(
                matches!(refused, WebhookError::Unauthorized(_)),
                "{channel:?}: {refused}"
            );
        }
        assert_ne!(webhook.tampered().body, webhook.body);
        assert_eq!(webhook.with_wrong_signature().body, webhook.body);
    }
}

#[tokio::test]
async fn a_telegram_customer_named_by_a_name_gets_a_stable_numeric_chat() {
    let sim = start().await;
    let webhook = sim.webhook(Channel::Telegram, "alice", "hallo");
    let inbound = ingest(&sim, &webhook).unwrap();
    let [Inbound::Message(message)] = inbound.as_slice() else {
        panic!("{inbound:?}");
    };
    let chat = sim.customer_address(Channel::Telegram, "alice");
    assert_eq!(message.contact.expose(), &chat);
    assert!(chat.parse::<i64>().unwrap() > i64::from(u32::MAX));
    assert_eq!(
        Simulator::start(SimulatorConfig::default())
            .await
            .unwrap()
            .customer_address(Channel::Telegram, "alice"),
        chat
    );

    let reply = try_send(
        &sim,
        Channel::Telegram,
        "alice",
        "hallo Alice",
        Auth::Right,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let received = sim.received(Channel::Telegram, "alice");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].customer, "alice");
    assert_eq!(sim.received(Channel::Telegram, &chat), received);

    let second = sim.webhook(Channel::Telegram, "alice", "noch was");
    let id = |webhook: &Webhook| webhook.provider_message_id.parse::<i64>().unwrap();
    assert!(id(&second) > id(&webhook), "update_id increases");
}

#[tokio::test]
async fn receipt_webhooks_parse_as_receipts_where_the_channel_has_them() {
    let sim = start().await;
    for channel in CHANNELS {
        let customer = customer(channel);
        let outbound = answered_id(channel, &send(&sim, channel, "hallo", Auth::Right).await);
        for kind in [ReceiptKind::Delivered, ReceiptKind::Read] {
            let webhook = sim.webhook_receipt(channel, customer, &outbound, kind);
            let inbound = ingest(&sim, &webhook).unwrap();
            let status = match kind {
                ReceiptKind::Delivered => ReceiptStatus::Delivered,
                ReceiptKind::Read => ReceiptStatus::Read,
            };
            match (channel, kind, inbound.as_slice()) {
                (Channel::Telegram, _, [Inbound::Ignored { .. }]) => {}
                (Channel::Messenger, ReceiptKind::Read, [Inbound::Watermark(watermark)]) => {
                    assert_eq!(watermark.status, status);
                    assert_eq!(watermark.contact.expose(), customer);
                }
                (_, _, [Inbound::Receipt(receipt)]) => {
                    assert_eq!(receipt.provider_message_id, outbound, "{channel:?}");
                    assert_eq!(receipt.status, status, "{channel:?}");
                    assert_eq!(receipt.contact.as_ref().unwrap().expose(), customer);
                    assert!(receipt.at_unix.is_some());
                }
                _ => panic!("{channel:?} {kind:?}: {inbound:?}"),
            }
        }
    }
}

#[tokio::test]
async fn image_webhooks_refer_to_media_the_simulator_serves() {
    let sim = start().await;
    let bytes = b"\xff\xd8\xff\xe0 not really a jpeg".to_vec();
    let media = sim.add_media(bytes.clone(), "image/jpeg");
    assert_eq!(media.size, bytes.len());
    let client = sim.http_client();
    for channel in CHANNELS {
        let webhook = sim.webhook_image(
            channel,
            customer(channel),
            &media,
            Some("Photo of the label"),
        );
        let inbound = ingest(&sim, &webhook).unwrap();
        let media_part = inbound
            .iter()
            .find_map(|inbound| match inbound {
                Inbound::Message(message) => match &message.content {
                    InboundContent::Media {
                        kind,
                        provider_media,
                        caption,
                        ..
                    } => Some((*kind, provider_media.clone(), caption.clone())),
                    _ => None,
                },
                _ => None,
            })
            .unwrap_or_else(|| panic!("{channel:?}: {inbound:?}"));
        assert_eq!(media_part.0, MediaKind::Image);
        let fetched = match channel {
            Channel::WhatsApp => {
                assert_eq!(media_part.1, media.id);
                let token = &sim.config().whatsapp.access_token;
                let api = sim.api_base_url(channel);
                let info: Value = client
                    .get(format!("{api}/{}", media.id))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(info["mime_type"], "image/jpeg");
                let url = info["url"].as_str().unwrap();
                let refused = client.get(url).send().await.unwrap();
                assert_eq!(refused.status(), 401, "the download needs the token");
                client.get(url).bearer_auth(token).send().await.unwrap()
            }
            Channel::Telegram => {
                assert_eq!(media_part.1, media.id, "the largest size");
                let api = sim.api_base_url(channel);
                let token = &sim.config().telegram.bot_token;
                let file: Value = client
                    .get(format!("{api}/bot{token}/getFile?file_id={}", media.id))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let path = file["result"]["file_path"].as_str().unwrap();
                client
                    .get(format!("{api}/file/bot{token}/{path}"))
                    .send()
                    .await
                    .unwrap()
            }
            _ => {
                assert_eq!(media_part.1, media.url);
                client.get(&media.url).send().await.unwrap()
            }
        };
        assert_eq!(fetched.status(), 200, "{channel:?}");
        assert_eq!(fetched.headers()["content-type"], "image/jpeg");
        assert_eq!(fetched.bytes().await.unwrap().as_ref(), bytes.as_slice());
        let caption_as_part = inbound.iter().any(|inbound| {
            matches!(inbound, Inbound::Message(message)
                if matches!(&message.content, InboundContent::Text(text) if text.expose() == "Photo of the label"))
        });
        let caption = media_part.2.map(|caption| caption.expose().clone());
        assert!(
            caption.as_deref() == Some("Photo of the label") || caption_as_part,
            "{channel:?}: the caption arrives"
        );
    }
}

#[tokio::test]
async fn bad_requests_get_the_providers_error_and_never_stop_the_server() {
    let sim = start().await;
    let config = sim.config();
    let client = sim.http_client();
    let garbage: &[&[u8]] = &[b"", b"{", b"[]", b"\x00\xff", b"{\"to\":17}", b"null"];
    for body in garbage {
        let whatsapp = client
            .post(format!(
                "{}/{}/messages",
                sim.api_base_url(Channel::WhatsApp),
                config.whatsapp.phone_number_id
            ))
            .bearer_auth(&config.whatsapp.access_token)
            .header("content-type", "application/json")
            .body(body.to_vec());
        let messenger = client
            .post(format!(
                "{}/me/messages",
                sim.api_base_url(Channel::Messenger)
            ))
            .bearer_auth(&config.messenger.page_access_token)
            .body(body.to_vec());
        let telegram = client
            .post(format!(
                "{}/bot{}/sendMessage",
                sim.api_base_url(Channel::Telegram),
                config.telegram.bot_token
            ))
            .header("content-type", "application/json")
            .body(body.to_vec());
        let viber = client
            .post(format!("{}/send_message", sim.api_base_url(Channel::Viber)))
            .header("X-Viber-Auth-Token", &config.viber.auth_token)
            .body(body.to_vec());
        let web = client
            .post(sim.api_base_url(Channel::WebChat))
            .header("content-type", "application/json")
            .header(
                "X-Helpline-Signature",
                format!("sha256={}", hmac_hex(&config.web.shared_secret, body)),
            )
            .body(body.to_vec());
        for (channel, request) in [
            (Channel::WhatsApp, whatsapp),
            (Channel::Messenger, messenger),
            (Channel::Telegram, telegram),
            (Channel::Viber, viber),
            (Channel::WebChat, web),
        ] {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let json: Value = response.json().await.unwrap();
            match channel {
                Channel::Viber => {
                    assert_eq!(status, 200);
                    assert!(matches!(json["status"].as_i64(), Some(3 | 4)), "{json}");
                }
                Channel::WhatsApp | Channel::Messenger => {
                    assert_eq!(status, 400, "{channel:?} {body:?}");
                    assert_eq!(json["error"]["code"], 100);
                }
                _ => assert_eq!(status, 400, "{channel:?} {body:?}: {json}"),
            }
        }
    }
    for path in [
        "/",
        "/nowhere",
        "/whatsapp/v21.0",
        "/telegram/bot/x/y/z",
        "/viber/pa/unknown",
        "/media/404",
        "/%zz/%",
    ] {
        let response = client
            .get(format!("{}{path}", sim.base_url()))
            .send()
            .await
            .unwrap();
        assert!(response.status().as_u16() < 500, "{path}");
    }
    assert!(sim.all_received().is_empty());
    assert_success(
        Channel::Viber,
        &send(&sim, Channel::Viber, "still serving", Auth::Right).await,
    );
}

#[tokio::test]
async fn text_over_the_providers_limit_is_refused() {
    let sim = start().await;
    for (channel, limit) in [
        (Channel::WhatsApp, 4096),
        (Channel::Messenger, 2000),
        (Channel::Telegram, 4096),
        (Channel::Viber, 7000),
    ] {
        let at_limit = "é".repeat(limit);
        assert_success(channel, &send(&sim, channel, &at_limit, Auth::Right).await);
        let over = send(&sim, channel, &"é".repeat(limit + 1), Auth::Right).await;
        let refused = match channel {
            Channel::Viber => over.json["status"] == 3,
            _ => over.status == 400,
        };
        assert!(refused, "{channel:?}: {over:?}");
        assert_eq!(sim.received(channel, customer(channel)).len(), 1);
    }
}

#[tokio::test]
async fn deliver_posts_the_webhook_byte_for_byte() {
    type Seen = Arc<Mutex<Vec<(String, Option<String>, http::HeaderMap, Vec<u8>)>>>;
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(
        move |uri: http::Uri, headers: http::HeaderMap, body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                let entry = (
                    uri.path().to_owned(),
                    uri.query().map(str::to_owned),
                    headers,
                    body.to_vec(),
                );
                record.lock().unwrap().push(entry);
                (http::StatusCode::ACCEPTED, "seen")
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let sim = start().await;
    let mut webhook = sim.webhook(Channel::Viber, customer(Channel::Viber), ODD_TEXT);
    webhook.query = Some("sig=abc".to_owned());
    let response = sim.deliver(&url, &webhook).await.unwrap();
    assert_eq!((response.status, response.body.as_str()), (202, "seen"));
    let seen = seen.lock().unwrap();
    let (path, query, headers, body) = &seen[0];
    assert_eq!(path, "/webhooks/viber");
    assert_eq!(query.as_deref(), Some("sig=abc"));
    assert_eq!(body, &webhook.body);
    for (name, value) in &webhook.headers {
        assert_eq!(headers[name.as_str()], value.as_str());
    }
}

#[tokio::test]
async fn a_dropped_simulator_stops_serving() {
    let sim = start().await;
    let client = sim.http_client();
    let url = sim.base_url();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    drop(sim);
    let fresh = Simulator::start(SimulatorConfig::default())
        .await
        .unwrap()
        .http_client();
    let mut refused = false;
    for _ in 0..50 {
        if fresh.get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still serving after drop");
}

#[tokio::test]
async fn secrets_do_not_show_in_debug_output() {
    let sim = start().await;
    let config = sim.config();
    let debug = format!(
        "{config:?} {:?}",
        sim.webhook(Channel::Telegram, "alice", "hallo")
    );
    for secret in [
        &config.whatsapp.app_secret,
        &config.whatsapp.access_token,
        &config.messenger.page_access_token,
        &config.telegram.secret_token,
        &config.telegram.bot_token,
        &config.viber.auth_token,
        &config.web.shared_secret,
    ] {
        assert!(!debug.contains(secret.as_str()), "{debug}");
    }
}

#[tokio::test]
async fn plain_http_needs_no_process_wide_tls_provider() {
    let sim = start().await;
    assert_success(
        Channel::WebChat,
        &send(&sim, Channel::WebChat, "hallo", Auth::Right).await,
    );
    let webhook = sim.webhook(Channel::WebChat, "sess_1", "hallo");
    let response = sim.deliver(&sim.base_url(), &webhook).await.unwrap();
    assert_eq!(response.status, 404, "the simulator is no ingress");
    assert!(
        rustls::crypto::CryptoProvider::get_default().is_none(),
        "nothing in this test binary installs one"
    );
}

/// An ingress on a raw socket that answers the webhooks it is sent with `statuses`, in
/// order, one connection each; returns its URL and how many webhooks it read.
async fn scripted_ingress(statuses: Vec<u16>) -> (String, Arc<Mutex<usize>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let read = Arc::new(Mutex::new(0));
    let counter = read.clone();
    tokio::spawn(async move {
        for status in statuses {
            let (mut socket, _) = listener.accept().await.unwrap();
            // The simulator's webhooks are small: one read holds the whole request.
            let mut request = vec![0; 64 * 1024];
            let _ = socket.read(&mut request).await.unwrap();
            *counter.lock().unwrap() += 1;
            let answer =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            socket.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    (url, read)
}

#[tokio::test]
async fn a_webhook_is_delivered_again_while_helpline_answers_5xx_or_429_as_providers_do() {
    let sim = start().await;
    let (url, read) = scripted_ingress(vec![503, 429, 500, 200]).await;
    let webhook = sim.webhook(Channel::WhatsApp, "4915100000009", "hallo");
    let mut retries = Vec::new();
    let answer = sim
        .deliver_until_answered(&url, &webhook, Duration::from_secs(30), |outcome, pause| {
            retries.push((outcome.as_ref().map(|a| a.status).ok(), pause))
        })
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(*read.lock().unwrap(), 4);
    assert_eq!(
        retries,
        [
            (Some(503), Duration::from_millis(250)),
            (Some(429), Duration::from_millis(500)),
            (Some(500), Duration::from_secs(1)),
        ]
    );
}

#[tokio::test]
async fn a_refused_webhook_is_not_delivered_again_and_an_unreachable_one_is_given_up() {
    let sim = start().await;
    let webhook = sim.webhook(Channel::WhatsApp, "4915100000009", "hallo");
    let (url, read) = scripted_ingress(vec![401, 200]).await;
    let answer = sim
        .deliver_until_answered(&url, &webhook, Duration::from_secs(30), |_, _| {
            panic!("a 401 is final")
        })
        .await
        .unwrap();
    assert_eq!((answer.status, *read.lock().unwrap()), (401, 1));

    // Nothing listens here: tries until the time is up, then says why.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut tries = 0;
    let outcome = sim
        .deliver_until_answered(&url, &webhook, Duration::from_secs(1), |_, _| tries += 1)
        .await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(tries, 2, "250 ms and 500 ms fit in 1 s, 1 s does not");
}

/// Apple's gateway takes what helpline's Apple adapter sends: the message is recorded with
/// its text or its quick reply's items; without a token it answers 401, with another
/// MSP's token 403, and nothing is recorded.
#[tokio::test]
async fn an_apple_send_built_by_the_adapter_is_taken_and_a_bad_token_refused() {
    use helpline_channels::{Form, OutboundAdapter, OutboundMessage, apple::AppleOutbound};
    use helpline_domain::{MessageId, QuickReply, TicketId};

    let sim = start().await;
    let config = sim.config().apple.clone();
    let apple = |secret: &str| AppleConfig {
        msp_id: config.msp_id.clone(),
        secret: secret.into(),
        business_id: config.business_id.clone(),
        api_base_url: sim.api_base_url(Channel::AppleMessages),
        ..Default::default()
    };
    let customer = customer(Channel::AppleMessages);
    let message = |n: u128, choices: Vec<QuickReply>| OutboundMessage {
        ticket: TicketId(uuid::Uuid::from_u128(1)),
        message: MessageId(uuid::Uuid::from_u128(n)),
        channel: Channel::AppleMessages,
        contact: customer.to_owned(),
        text: "Wie zufrieden waren Sie?".to_owned(),
        prompt: "rating".to_owned(),
        choices,
        language: "de".to_owned(),
        customer_last_message_at: None,
        notification: None,
    };
    let post = |request: helpline_channels::ProviderRequest| {
        let client = sim.http_client();
        async move {
            client
                .post(request.url)
                .headers(request.headers)
                .body(request.body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let adapter = AppleOutbound::new(apple(&config.secret_base64)).unwrap();
    let stars: Vec<QuickReply> = (1..=5)
        .map(|n| QuickReply {
            id: n.to_string(),
            title: "⭐".repeat(n),
        })
        .collect();
    for (n, choices) in [(2, Vec::new()), (3, stars)] {
        let request = adapter.build(&message(n, choices), Form::Text).unwrap();
        assert_eq!(post(request).await, 200);
    }
    let received = sim.received(Channel::AppleMessages, customer);
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].text.as_deref(),
        Some("Wie zufrieden waren Sie?")
    );
    assert_eq!(received[1].choices.len(), 5);
    assert_eq!(received[1].choices[4].0, "5");

    // Another MSP's secret: 403; no token at all: 401.
    let other = AppleOutbound::new(apple("b3RoZXItbXNwLXNlY3JldA==")).unwrap();
    let request = other.build(&message(4, Vec::new()), Form::Text).unwrap();
    assert_eq!(post(request).await, 403);
    let mut request = adapter.build(&message(5, Vec::new()), Form::Text).unwrap();
    request.headers.remove("authorization");
    assert_eq!(post(request).await, 401);
    assert_eq!(sim.received(Channel::AppleMessages, customer).len(), 2);
}

#[tokio::test]
async fn a_send_whose_sender_hung_up_before_the_provider_took_it_is_not_taken() {
    // The latency runs before the provider takes a send: a sender that died meanwhile
    // (its connection closed) left nothing for the provider to take.
    let sim = start().await;
    let latency = Duration::from_millis(400);
    sim.send_latency(latency..=latency, 7);
    for channel in CHANNELS {
        let short = Duration::from_millis(100);
        let error = try_send(&sim, channel, customer(channel), "weg", Auth::Right, short)
            .await
            .unwrap_err();
        assert!(error.is_timeout(), "{channel:?}: {error}");
    }
    tokio::time::sleep(latency + Duration::from_millis(300)).await;
    for channel in CHANNELS {
        assert_eq!(
            sim.received(channel, customer(channel)).len(),
            0,
            "{channel:?}"
        );
    }
    // A sender that waits gets its message taken.
    for channel in CHANNELS {
        assert_success(channel, &send(&sim, channel, "da!", Auth::Right).await);
        assert_eq!(sim.received(channel, customer(channel)).len(), 1);
    }
}
