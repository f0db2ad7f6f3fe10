//! The web-chat widget's API as a page calls it, for the tests that play a customer
//! without a browser: a session, messages and files sent with its token, and what the
//! session's conversation reads.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt as _;

/// A customer's widget session on the console at `base`.
pub struct WidgetCustomer {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl WidgetCustomer {
    /// Opens a session, as a page does on its first message.
    pub async fn open(http: &reqwest::Client, base: &str) -> Self {
        let opened = http
            .post(format!("{base}/widget/api/sessions"))
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), 201);
        let token = opened.json::<serde_json::Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        Self {
            http: http.clone(),
            base: base.to_owned(),
            token,
        }
    }

    /// The same console, another token (a forged one, say).
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.to_owned(),
        }
    }

    /// Sends a message (`{id, text, attachments}`), as the page does: the answer's status.
    pub async fn send(&self, message: serde_json::Value) -> u16 {
        self.http
            .post(format!("{}/widget/api/messages", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(message.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Uploads a file: the answer.
    pub async fn upload(&self, content_type: &str, bytes: &'static [u8]) -> reqwest::Response {
        self.http
            .post(format!("{}/widget/api/uploads", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    /// The status of opening the session's conversation.
    pub async fn events_status(&self) -> u16 {
        self.http
            .get(format!("{}/widget/api/events", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The server-sent events the session reads within `wait`, as text.
    pub async fn events(&self, wait: Duration) -> String {
        let response = self
            .http
            .get(format!("{}/widget/api/events", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let mut read = String::new();
        let _ = tokio::time::timeout(wait, async {
            while let Some(Ok(chunk)) = body.next().await {
                read.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await;
        read
    }

    /// The conversation once it holds a message from helpline, within `within`.
    pub async fn answered(&self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let read = self.events(Duration::from_millis(500)).await;
            if read.contains("\"from\":\"helpline\"") {
                return read;
            }
            assert!(
                Instant::now() < deadline,
                "helpline never answered the widget: {read}"
            );
        }
    }
}

/// The web chat's shared secret of these tests (local only).
pub const WEB_SECRET: &str = "widget-test-local-only-web-secret";

/// Sets up a `helpline all` whose console on `console` serves the widget: the web chat
/// channel, its replies to the widget's callback, and the widget's files admitted as the
/// web chat's attachments.
pub fn serve_widget(command: &mut std::process::Command, console: u16) {
    command
        .env("HELPLINE_CHANNELS__WEB__SHARED_SECRET", WEB_SECRET)
        .env(
            "HELPLINE_CHANNELS__WEB__CALLBACK_URL",
            format!("http://127.0.0.1:{console}/widget/callback"),
        )
        .env(
            "HELPLINE_INGRESS__MEDIA_HOSTS__WEB",
            format!("[\"http://127.0.0.1:{console}\"]"),
        );
}
