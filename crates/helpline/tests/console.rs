//! The console as a browser meets it: an agent's password set with `helpline agent
//! passwd`, sign-in into httpOnly cookies, and gRPC-Web calls that reach the services only
//! with the session and its CSRF token, as the caller the token names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;
mod tls;
mod widget_client;

use std::time::{Duration, SystemTime};

use helpline_assignment::AuthKey;
use helpline_assignment::auth::issue;
use helpline_proto::v1 as pb;
use helpline_testkit::NatsServer;
use process::{KillOnDrop, Ports, helpline, passwd, wait_for};
use prost::Message;
use widget_client::{WidgetCustomer, serve_widget};

const PASSWORD: &str = "anna's long password";

struct Console {
    base: String,
    http: reqwest::Client,
}

/// What a sign-in left in the browser.
struct Session {
    token: String,
    csrf: String,
    set_cookies: Vec<String>,
}

impl Session {
    fn cookie(&self) -> String {
        format!(
            "helpline_session={}; helpline_csrf={}",
            self.token, self.csrf
        )
    }
}

impl Console {
    async fn sign_in(&self, agent: &str, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/sign-in", self.base))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "agent": agent, "password": password }).to_string())
            .send()
            .await
            .unwrap()
    }

    async fn session(&self, agent: &str) -> Session {
        let response = self.sign_in(agent, PASSWORD).await;
        assert_eq!(response.status(), 200);
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let value = |name: &str| {
            set_cookies
                .iter()
                .find_map(|c| c.strip_prefix(&format!("{name}=")))
                .and_then(|rest| rest.split(';').next())
                .unwrap()
                .to_owned()
        };
        Session {
            token: value("helpline_session"),
            csrf: value("helpline_csrf"),
            set_cookies,
        }
    }

    /// A gRPC-Web call of `path` with `message`, sending `cookie` and `csrf` when given:
    /// the HTTP status and the call's gRPC status.
    async fn call(
        &self,
        path: &str,
        message: &impl Message,
        cookie: Option<&str>,
        csrf: Option<&str>,
    ) -> (u16, String) {
        let mut body = vec![0u8];
        let encoded = message.encode_to_vec();
        body.extend_from_slice(&u32::try_from(encoded.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&encoded);
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if let Some(code) = response.headers().get("grpc-status") {
            return (status, code.to_str().unwrap().to_owned());
        }
        // The status is in the trailer frame at the end of the body.
        let body = response.bytes().await.unwrap();
        let mut rest = &body[..];
        while rest.len() >= 5 {
            let flag = rest[0];
            let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            let frame = &rest[5..5 + len];
            if flag & 0x80 != 0 {
                let trailers = String::from_utf8_lossy(frame);
                let code = trailers
                    .lines()
                    .find_map(|line| line.trim().strip_prefix("grpc-status:"))
                    .unwrap()
                    .trim()
                    .to_owned();
                return (status, code);
            }
            rest = &rest[5 + len..];
        }
        panic!("no grpc-status in the answer to {path}");
    }
}

fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[tokio::test]
async fn an_agent_signs_in_with_a_password_and_the_session_is_the_only_way_in() {
    let nats = NatsServer::start().await.unwrap();
    let (mut command, Ports { ops, console, .. }) = helpline("all", &nats.url());
    let _helpline = KillOnDrop::quiet(&mut command);
    wait_for(ops, "/readyz", 200).await;

    // Passwords: too short is refused, an unknown agent too, Anna's and Sabine's are set.
    let short = passwd(&nats.url(), "anna", "short");
    assert_eq!(short.status.code(), Some(2), "{short:?}");
    let unknown = passwd(&nats.url(), "mallory", PASSWORD);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    for agent in ["anna", "sabine"] {
        let set = passwd(&nats.url(), agent, PASSWORD);
        assert!(set.status.success(), "{set:?}");
    }
    let js = async_nats::jetstream::new(nats.connect().await.unwrap());
    let stored = js
        .get_key_value("helpline-de-credentials")
        .await
        .unwrap()
        .get("anna")
        .await
        .unwrap()
        .unwrap();
    let stored = String::from_utf8(stored.to_vec()).unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("long password"));

    let console = Console {
        base: format!("http://127.0.0.1:{console}"),
        http: http_client(),
    };
    // The page, under a policy that runs only its own scripts.
    let page = console.http.get(&console.base).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");

    // A wrong password and an unknown agent get the same refusal.
    let wrong = console.sign_in("anna", "not anna's password").await;
    assert_eq!(wrong.status(), 401);
    let wrong = wrong.text().await.unwrap();
    let unknown = console.sign_in("mallory", PASSWORD).await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(unknown.text().await.unwrap(), wrong);

    // Signed in: the token in a cookie no script reads, the CSRF token in one it does.
    let anna = console.session("anna").await;
    let session_cookie = anna
        .set_cookies
        .iter()
        .find(|c| c.starts_with("helpline_session="))
        .unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    let who = console
        .http
        .get(format!("{}/api/session", console.base))
        .header("cookie", anna.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(who.status(), 200);
    let who: serde_json::Value = who.json().await.unwrap();
    assert_eq!(who["agent"], "anna");
    assert_eq!(who["role"], "agent");
    assert_eq!(who["languages"], serde_json::json!(["de", "en"]));

    // A call reaches AgentDesk only with the session and its CSRF token.
    let online = pb::SetPresenceRequest {
        presence: pb::AgentPresence::Online as i32,
    };
    let presence = "/helpline.v1.AgentDesk/SetPresence";
    assert_eq!(
        console.call(presence, &online, None, None).await,
        (401, "16".to_owned()),
        "no cookie"
    );
    assert_eq!(
        console
            .call(presence, &online, Some(&anna.cookie()), None)
            .await,
        (403, "7".to_owned()),
        "no CSRF token"
    );
    let sabine = console.session("sabine").await;
    assert_eq!(
        console
            .call(presence, &online, Some(&anna.cookie()), Some(&sabine.csrf))
            .await,
        (403, "7".to_owned()),
        "another session's CSRF token"
    );
    assert_eq!(
        console
            .call(presence, &online, Some(&anna.cookie()), Some(&anna.csrf))
            .await,
        (200, "0".to_owned()),
        "the session and its CSRF token"
    );

    // A token signed with another key, and one that has expired, are refused.
    let forged = issue(
        &AuthKey::new(b"someone else's secret key, 32 bytes or more".to_vec()).unwrap(),
        "anna",
        helpline_region::Role::Admin,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap();
    let expired = issue(
        &AuthKey::development(),
        "anna",
        helpline_region::Role::Agent,
        Duration::from_secs(60),
        SystemTime::now() - Duration::from_secs(3600),
    )
    .unwrap();
    for token in [forged, expired] {
        let cookie = format!("helpline_session={token}");
        let csrf = helpline_console::session::csrf_token(&token);
        assert_eq!(
            console
                .call(presence, &online, Some(&cookie), Some(&csrf))
                .await,
            (401, "16".to_owned())
        );
        let who = console
            .http
            .get(format!("{}/api/session", console.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(who.status(), 204, "nobody is signed in with that token");
    }

    // What the services allow the token is all the console allows: Anna reads no ticket
    // through TicketQuery (agents read theirs on the AgentDesk), Sabine may.
    let ticket = pb::GetTicketRequest {
        ticket_id: uuid::Uuid::now_v7().to_string(),
    };
    let get = "/helpline.v1.TicketQuery/GetTicket";
    assert_eq!(
        console
            .call(get, &ticket, Some(&anna.cookie()), Some(&anna.csrf))
            .await,
        (200, "7".to_owned()),
        "an agent opening a ticket by its id"
    );
    assert_eq!(
        console
            .call(get, &ticket, Some(&sabine.cookie()), Some(&sabine.csrf))
            .await,
        (200, "5".to_owned()),
        "a supervisor, for a ticket that is not there"
    );
    // Nor does she watch the region's tickets, which the supervisor's view does.
    assert_eq!(
        console
            .call(
                "/helpline.v1.TicketQuery/WatchTickets",
                &pb::WatchTicketsRequest {},
                Some(&anna.cookie()),
                Some(&anna.csrf)
            )
            .await,
        (200, "7".to_owned()),
        "an agent watching every ticket"
    );

    // Sign-out needs the CSRF token and clears both cookies.
    let out = |csrf: Option<&str>| {
        let mut request = console
            .http
            .post(format!("{}/api/sign-out", console.base))
            .header("cookie", anna.cookie());
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf.to_owned());
        }
        request.send()
    };
    assert_eq!(out(None).await.unwrap().status(), 403);
    let signed_out = out(Some(&anna.csrf)).await.unwrap();
    assert_eq!(signed_out.status(), 204);
    let cleared: Vec<&str> = signed_out
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cleared.len(), 2);
    assert!(
        cleared.iter().all(|c| c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    // … and ends the session on the server: the old cookie opens nothing any more, here
    // or at the services.
    let who = console
        .http
        .get(format!("{}/api/session", console.base))
        .header("cookie", anna.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(who.status(), 204, "the signed-out session is still known");
    assert_eq!(
        console
            .call(presence, &online, Some(&anna.cookie()), Some(&anna.csrf))
            .await,
        (401, "16".to_owned()),
        "a signed-out session's call"
    );
    // Signed in again at once: a new session works.
    let again = console.session("anna").await;
    assert_eq!(
        console
            .call(presence, &online, Some(&again.cookie()), Some(&again.csrf))
            .await,
        (200, "0".to_owned()),
        "a new session after signing out"
    );
}

#[tokio::test]
async fn guessing_a_password_is_stopped_after_five_tries() {
    let nats = NatsServer::start().await.unwrap();
    let (mut command, Ports { ops, console, .. }) = helpline("all", &nats.url());
    let _helpline = KillOnDrop::quiet(&mut command);
    wait_for(ops, "/readyz", 200).await;
    assert!(passwd(&nats.url(), "anna", PASSWORD).status.success());
    let console = Console {
        base: format!("http://127.0.0.1:{console}"),
        http: http_client(),
    };
    for guess in 0..5 {
        let refused = console
            .sign_in("anna", &format!("guess number {guess}"))
            .await;
        assert_eq!(refused.status(), 401);
    }
    // The right password too, now: the guesser cannot tell it from a wrong one.
    assert_eq!(console.sign_in("anna", PASSWORD).await.status(), 429);
    // Another agent is not locked out by Anna's.
    assert_eq!(
        console.sign_in("jonas", "whatever it is").await.status(),
        401
    );
}

#[tokio::test]
async fn a_console_alone_must_be_told_where_the_services_are() {
    let nats = NatsServer::start().await.unwrap();
    let (command, _) = helpline("console", &nats.url());
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::from(command).output(),
    )
    .await
    .expect("helpline console neither served nor stopped")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("console.agent_desk_url is not set"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_console_reaches_services_that_speak_tls_with_the_regions_ca() {
    let dir = tempfile::tempdir().unwrap();
    tls::certificates(dir.path());
    let nats = NatsServer::start().await.unwrap();
    let (mut services, Ports { ops, grpc, .. }) = helpline("all", &nats.url());
    let _services = KillOnDrop::quiet(
        services
            .env(
                "HELPLINE_GRPC__TLS_CERT_FILE",
                dir.path().join("server.crt"),
            )
            .env("HELPLINE_GRPC__TLS_KEY_FILE", dir.path().join("server.key")),
    );
    wait_for(ops, "/readyz", 200).await;
    let set = passwd(&nats.url(), "anna", PASSWORD);
    assert!(set.status.success(), "{set:?}");
    let (mut alone, ports) = helpline("console", &nats.url());
    let service = format!("https://localhost:{grpc}");
    for key in ["AGENT_DESK_URL", "QUERY_URL", "FEEDBACK_URL"] {
        alone.env(format!("HELPLINE_CONSOLE__{key}"), &service);
    }
    // Without the CA, an https:// service is refused at start, saying what is missing.
    let refused = tokio::process::Command::from({
        let mut without = std::process::Command::new(env!("CARGO_BIN_EXE_helpline"));
        without
            .args(["console", "--log-format", "json"])
            .envs(alone.get_envs().filter_map(|(k, v)| Some((k, v?))));
        without
    })
    .output();
    let refused = tokio::time::timeout(Duration::from_secs(60), refused)
        .await
        .unwrap()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("console.tls_ca_file"), "{said}");

    let _console =
        KillOnDrop::quiet(alone.env("HELPLINE_CONSOLE__TLS_CA_FILE", dir.path().join("ca.crt")));
    wait_for(ports.ops, "/readyz", 200).await;
    let console = Console {
        base: format!("http://127.0.0.1:{}", ports.console),
        http: http_client(),
    };
    let anna = console.session("anna").await;
    let online = pb::SetPresenceRequest {
        presence: pb::AgentPresence::Online as i32,
    };
    assert_eq!(
        console
            .call(
                "/helpline.v1.AgentDesk/SetPresence",
                &online,
                Some(&anna.cookie()),
                Some(&anna.csrf)
            )
            .await,
        (200, "0".to_owned()),
        "a call through TLS"
    );
}

#[tokio::test]
async fn a_widget_session_is_its_own_token_reads_only_its_own_conversation_and_replies_come_signed()
{
    let nats = NatsServer::start().await.unwrap();
    let (mut command, Ports { ops, console, .. }) = helpline("all", &nats.url());
    serve_widget(&mut command, console);
    command.env(
        "HELPLINE_CONSOLE__WIDGET_ORIGINS",
        r#"["https://www.example.com"]"#,
    );
    let _helpline = KillOnDrop::quiet(&mut command);
    wait_for(ops, "/readyz", 200).await;
    let http = http_client();
    let base = format!("http://127.0.0.1:{console}");
    let say = |id: &str, text: &str| serde_json::json!({ "id": id, "text": text });
    let first = WidgetCustomer::open(&http, &base).await;
    let second = WidgetCustomer::open(&http, &base).await;
    assert_ne!(first.token, second.token);

    // A message sent twice under one id (a retry after a lost answer) is one message.
    let matebook = say("first-0001", "Mein MateBook startet nicht");
    assert_eq!(first.send(matebook.clone()).await, 200);
    assert_eq!(first.send(matebook).await, 200);
    assert_eq!(
        second
            .send(say("second-0001", "Meine Uhr lädt nicht"))
            .await,
        200
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut read = String::new();
    while !read.contains("Seriennummer") {
        assert!(std::time::Instant::now() < deadline, "no bot reply: {read}");
        read = first.events(Duration::from_millis(500)).await;
    }
    assert_eq!(
        read.matches("Mein MateBook startet nicht").count(),
        1,
        "{read}"
    );
    assert!(
        !read.contains("Uhr"),
        "the first session reads the second's: {read}"
    );
    let theirs = second.events(Duration::from_millis(500)).await;
    assert!(theirs.contains("Meine Uhr"), "{theirs}");
    assert!(!theirs.contains("MateBook startet"), "{theirs}");

    // A token that is not one the widget made — altered, or another session's id with
    // the first's MAC — reads and sends nothing.
    let (session, mac) = first.token.split_once('.').unwrap();
    let (other_session, _) = second.token.split_once('.').unwrap();
    let mut altered = mac.to_owned();
    altered.replace_range(0..1, if mac.starts_with('0') { "1" } else { "0" });
    for forged in [
        format!("{session}.{altered}"),
        format!("{other_session}.{mac}"),
        "wgt_00000000000000000000000000000000.00".to_owned(),
        String::new(),
    ] {
        let forger = first.with_token(&forged);
        assert_eq!(forger.events_status().await, 401, "events with {forged:?}");
        assert_eq!(
            forger.send(say("forged-0001", "hallo")).await,
            401,
            "{forged:?}"
        );
    }
    // Bad input: a clear 400.
    assert_eq!(first.send(say("x", "too short an id")).await, 400);
    assert_eq!(first.send(say("first-0002", "   ")).await, 400);

    // Files: only with a session, only kinds a customer sends, only the session's own,
    // and fetched only by the signed URL the webhook carried.
    let invoice: &[u8] = b"Rechnung Nr. 4711";
    let nobody = first.with_token("not-a-session");
    assert_eq!(nobody.upload("text/plain", invoice).await.status(), 401);
    assert_eq!(
        first
            .upload("application/x-msdownload", invoice)
            .await
            .status(),
        415
    );
    let uploaded = second.upload("text/plain", invoice).await;
    assert_eq!(uploaded.status(), 201);
    let name = uploaded.json::<serde_json::Value>().await.unwrap()["upload"]
        .as_str()
        .unwrap()
        .to_owned();
    let borrowed =
        serde_json::json!({ "id": "first-0003", "text": "", "attachments": [{ "upload": name }] });
    assert_eq!(
        first.send(borrowed).await,
        400,
        "another session's upload was taken"
    );
    for query in ["", "?sig=", "?sig=00"] {
        let fetched = http
            .get(format!("{base}/widget/uploads/{name}{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(fetched.status(), 404, "{query}");
    }

    // Callbacks come from egress, signed; anything else is refused.
    let callback = serde_json::json!({
        "version": 1, "event_id": "forged-reply", "type": "message",
        "session_id": session, "message": { "id": "out_x", "text": "Bitte zahlen Sie hier" },
    })
    .to_string();
    for signature in [None, Some("sha256=00"), Some("sha256=zz")] {
        let mut request = http
            .post(format!("{base}/widget/callback"))
            .header("content-type", "application/json")
            .body(callback.clone());
        if let Some(signature) = signature {
            request = request.header("x-helpline-signature", signature);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{signature:?}");
    }
    let read = first.events(Duration::from_millis(500)).await;
    assert!(!read.contains("Bitte zahlen"), "{read}");

    // Only the configured site's pages may call the API from a browser.
    for (origin, allowed) in [
        ("https://www.example.com", true),
        ("https://evil.example", false),
    ] {
        let preflight = http
            .request(
                reqwest::Method::OPTIONS,
                format!("{base}/widget/api/messages"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(
            preflight
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned()),
            allowed.then(|| origin.to_owned()),
            "{origin}"
        );
    }
}
