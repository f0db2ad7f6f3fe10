//! The one way a process connects to NATS (`[nats]`): as its own user (a password, an
//! nkey seed or a `.creds` file), over TLS when configured, with replies in an inbox of
//! its own, and with what the server reports (a permission violation above all) in the
//! log rather than only as a request that timed out.
//!
//! A deployment gives each service a user whose permissions the server holds
//! (`deploy/nats/values.yaml`, docs/ARCHITECTURE.md "NATS permissions"); `helpline dev`
//! connects without one to its own server on loopback.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::{Client, ConnectOptions, Event};

use crate::config::NatsConfig;

/// Connects once, failing when the server does not answer: for operator commands.
pub async fn connect(config: &NatsConfig) -> anyhow::Result<Client> {
    options(config)
        .await?
        .connect(&config.url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.url))
}

/// Connects, trying again until the server answers: for services, whose pods may start
/// before NATS does. A bad configuration (a missing certificate file) still fails at once.
pub async fn connect_retrying(config: &NatsConfig) -> anyhow::Result<Client> {
    options(config)
        .await?
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(&config.url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.url))
}

/// Every problem of `[nats]`, as `(key, problem)`; empty when it can be used.
pub fn problems(config: &NatsConfig) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let password = config.password.as_ref();
    match (&config.user, password) {
        (Some(_), None) => problems.push((
            "nats.password",
            "nats.user needs a password (HELPLINE_NATS__PASSWORD)".to_owned(),
        )),
        (None, Some(_)) => problems.push(("nats.user", "a password needs nats.user".to_owned())),
        _ => {}
    }
    if password.is_some_and(|p| p.is_empty()) {
        problems.push(("nats.password", "is empty".to_owned()));
    }
    if config.nkey_seed.as_ref().is_some_and(|s| s.is_empty()) {
        problems.push(("nats.nkey_seed", "is empty".to_owned()));
    }
    let ways = [
        config.user.is_some() || password.is_some(),
        config.nkey_seed.is_some(),
        config.credentials_file.is_some(),
    ];
    if ways.iter().filter(|&&way| way).count() > 1 {
        problems.push((
            "nats",
            "sign in one way only: user and password, nkey_seed, or credentials_file".to_owned(),
        ));
    }
    if config.tls_cert_file.is_some() != config.tls_key_file.is_some() {
        problems.push((
            "nats.tls_cert_file",
            "a client certificate needs both tls_cert_file and tls_key_file".to_owned(),
        ));
    }
    match &config.inbox_prefix {
        Some(prefix) if !is_subject(prefix) => problems.push((
            "nats.inbox_prefix",
            format!("{prefix:?} is not a subject without wildcards"),
        )),
        Some(_) => {}
        None => {
            if let Some(user) = &config.user
                && !is_subject(user)
            {
                problems.push((
                    "nats.user",
                    format!("{user:?} cannot name an inbox (_INBOX.<user>); set nats.inbox_prefix"),
                ));
            }
        }
    }
    problems
}

/// Where replies to this process arrive: `_INBOX.<user>` for a user, else `_INBOX`.
pub fn inbox_prefix(config: &NatsConfig) -> String {
    match (&config.inbox_prefix, &config.user) {
        (Some(prefix), _) => prefix.clone(),
        (None, Some(user)) => format!("_INBOX.{user}"),
        (None, None) => "_INBOX".to_owned(),
    }
}

async fn options(config: &NatsConfig) -> anyhow::Result<ConnectOptions> {
    if let Some((key, problem)) = problems(config).into_iter().next() {
        anyhow::bail!("{key}: {problem}");
    }
    let mut options = if let (Some(user), Some(password)) = (&config.user, &config.password) {
        ConnectOptions::with_user_and_password(user.clone(), password.expose().to_owned())
    } else if let Some(seed) = &config.nkey_seed {
        ConnectOptions::with_nkey(seed.expose().to_owned())
    } else if let Some(file) = &config.credentials_file {
        ConnectOptions::with_credentials_file(file)
            .await
            .with_context(|| format!("nats.credentials_file: cannot read {}", file.display()))?
    } else {
        ConnectOptions::new()
    };
    let name = match &config.user {
        Some(user) => format!("helpline-{user}"),
        None => "helpline".to_owned(),
    };
    options = options
        .name(name)
        .custom_inbox_prefix(inbox_prefix(config))
        .event_callback(|event| async move { log(event) });
    if let Some(ca) = &config.tls_ca_file {
        readable("nats.tls_ca_file", ca)?;
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        readable("nats.tls_cert_file", cert)?;
        readable("nats.tls_key_file", key)?;
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if config.tls_required || config.tls_ca_file.is_some() || config.url.starts_with("tls://") {
        options = options.require_tls(true);
    }
    Ok(options)
}

/// What the connection reports. A request the server refuses (a subject outside the
/// user's permissions) gets no answer; the server says why only here.
fn log(event: Event) {
    match event {
        Event::ServerError(error) => tracing::error!(%error, "NATS server reported an error"),
        Event::ClientError(error) => tracing::warn!(%error, "NATS client error"),
        Event::Disconnected => tracing::warn!("disconnected from NATS"),
        Event::Connected => tracing::info!("connected to NATS"),
        other => tracing::info!(event = %other, "NATS connection"),
    }
}

fn readable(key: &str, path: &Path) -> anyhow::Result<()> {
    std::fs::metadata(path)
        .map(|_| ())
        .with_context(|| format!("{key}: cannot read {}", path.display()))
}

/// Dot-separated tokens without wildcards or white space.
fn is_subject(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| !c.is_whitespace() && c != '*' && c != '>')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use helpline_ingress::Secret;

    fn with_user(user: &str, password: &str) -> NatsConfig {
        NatsConfig {
            user: Some(user.to_owned()),
            password: Some(Secret::new(password)),
            ..NatsConfig::default()
        }
    }

    #[test]
    fn a_user_reads_replies_in_an_inbox_of_its_own() {
        assert_eq!(inbox_prefix(&NatsConfig::default()), "_INBOX");
        assert_eq!(inbox_prefix(&with_user("bot", "pw")), "_INBOX.bot");
        let chosen = NatsConfig {
            inbox_prefix: Some("_INBOX.bot-2".to_owned()),
            ..with_user("bot", "pw")
        };
        assert_eq!(inbox_prefix(&chosen), "_INBOX.bot-2");
    }

    #[test]
    fn names_every_problem() {
        assert!(problems(&NatsConfig::default()).is_empty());
        assert!(problems(&with_user("bot", "pw")).is_empty());
        let keys = |config: &NatsConfig| -> Vec<&str> {
            problems(config).into_iter().map(|(key, _)| key).collect()
        };
        let no_password = NatsConfig {
            user: Some("bot".to_owned()),
            ..NatsConfig::default()
        };
        assert_eq!(keys(&no_password), ["nats.password"]);
        assert_eq!(keys(&with_user("bot", "")), ["nats.password"]);
        let two_ways = NatsConfig {
            nkey_seed: Some(Secret::new("SUAB")),
            ..with_user("bot", "pw")
        };
        assert_eq!(keys(&two_ways), ["nats"]);
        let half_certificate = NatsConfig {
            tls_cert_file: Some("client.crt".into()),
            ..NatsConfig::default()
        };
        assert_eq!(keys(&half_certificate), ["nats.tls_cert_file"]);
        assert_eq!(keys(&with_user("a.*", "pw")), ["nats.user"]);
        let wildcard_inbox = NatsConfig {
            inbox_prefix: Some("_INBOX.>".to_owned()),
            ..NatsConfig::default()
        };
        assert_eq!(keys(&wildcard_inbox), ["nats.inbox_prefix"]);
    }

    #[test]
    fn never_prints_a_secret() {
        let config = NatsConfig {
            nkey_seed: None,
            ..with_user("bot", "hunter2-secret")
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
