//! The one way a process connects to NATS (`[nats]`): as its own user (a password, an
//! nkey seed or a `.creds` file), over TLS when configured, with replies in an inbox of
//! its own, and with what the server reports (a permission violation above all) in the
//! log rather than only as a request that timed out.
//!
//! A deployment gives each service a user whose permissions the server holds
//! (`deploy/nats/values.yaml`, docs/ARCHITECTURE.md "NATS permissions"); `helpline dev`
//! connects without one to its own server on loopback.
//!
//! A password may also be written into `nats.url` (`nats://user:password@host`). It is
//! taken out when the configuration is read ([`take_url_credentials`]), so the URL that
//! is logged, put in errors and handed to the client never holds it; anything that
//! shows a URL still shows it through [`redacted`].

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::{Client, ConnectOptions, Event};

use helpline_ingress::Secret;

use crate::config::NatsConfig;

/// How often the client pings its server. The client gives a connection up after two
/// pings without a pong, and only then moves to another node: with the client's default
/// (60 s) a node that hangs without closing its sockets (frozen, cut off from the
/// network) would stall its clients for three minutes; with 2 s, about six seconds.
const PING_INTERVAL: Duration = Duration::from_secs(2);

/// Connects once, failing when the server does not answer: for operator commands.
pub async fn connect(config: &NatsConfig) -> anyhow::Result<Client> {
    options(config)
        .await?
        .connect(servers(&config.url))
        .await
        .with_context(|| format!("cannot connect to NATS at {}", redacted(&config.url)))
}

/// The servers of `url`, one or several comma-separated: the client takes a list, and
/// would read the whole of a comma-separated string as one (malformed) address.
fn servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .collect()
}

/// Connects, trying again until the server answers: for services, whose pods may start
/// before NATS does. A bad configuration (a missing certificate file) still fails at once.
pub async fn connect_retrying(config: &NatsConfig) -> anyhow::Result<Client> {
    options(config)
        .await?
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(servers(&config.url))
        .await
        .with_context(|| format!("cannot connect to NATS at {}", redacted(&config.url)))
}

/// `url` (one server or several, comma-separated) with each `user:password@` shown as
/// `***@`: what logs and errors print.
pub fn redacted(url: &str) -> String {
    url.split(',')
        .map(|server| match split_userinfo(server) {
            (rest, Some(_)) => match rest.split_once("://") {
                Some((scheme, address)) => format!("{scheme}://***@{address}"),
                None => format!("***@{rest}"),
            },
            (server, None) => server,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Moves a `user:password@` written into `nats.url` to `nats.user` and `nats.password`
/// (percent-decoded), and leaves the URL without it. Refuses, naming no value, a URL
/// whose servers name different credentials, a user without a password, and credentials
/// given both in the URL and as `nats.user`, `nats.nkey_seed` or `nats.credentials_file`.
pub fn take_url_credentials(config: &mut NatsConfig) -> Result<(), String> {
    let (servers, userinfos): (Vec<String>, Vec<Option<String>>) =
        config.url.split(',').map(split_userinfo).unzip();
    let mut userinfos = userinfos.into_iter().flatten();
    let Some(userinfo) = userinfos.next() else {
        return Ok(());
    };
    config.url = servers.join(",");
    if userinfos.any(|other| other != userinfo) {
        return Err("nats.url: its servers name different credentials".to_owned());
    }
    if config.user.is_some()
        || config.password.is_some()
        || config.nkey_seed.is_some()
        || config.credentials_file.is_some()
    {
        return Err(
            "nats.url holds credentials and nats.user, nats.nkey_seed or nats.credentials_file is set too: sign in one way only"
                .to_owned(),
        );
    }
    let Some((user, password)) = userinfo.split_once(':') else {
        return Err(
            "nats.url: a user in the URL needs a password (user:password@); better, nats.user and HELPLINE_NATS__PASSWORD"
                .to_owned(),
        );
    };
    let decoded = |part: &str| {
        percent_decode(part).ok_or_else(|| {
            "nats.url: the credentials are not valid percent-encoded UTF-8".to_owned()
        })
    };
    config.user = Some(decoded(user)?);
    config.password = Some(Secret::new(decoded(password)?));
    Ok(())
}

/// One server's URL without its userinfo, and the userinfo (still percent-encoded).
fn split_userinfo(server: &str) -> (String, Option<String>) {
    let (scheme, rest) = match server.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, server),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (server.to_owned(), None);
    };
    let without = match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    };
    (without, Some(userinfo.to_owned()))
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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
        .ping_interval(PING_INTERVAL)
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
    fn a_url_of_several_servers_is_handed_on_as_a_list() {
        assert_eq!(
            servers("nats://nats-0:4222, nats://nats-1:4222,nats://nats-2:4222"),
            [
                "nats://nats-0:4222",
                "nats://nats-1:4222",
                "nats://nats-2:4222"
            ]
        );
        assert_eq!(servers("nats://nats:4222"), ["nats://nats:4222"]);
    }

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        for (url, shown) in [
            ("nats://bot:hunter2@nats:4222", "nats://***@nats:4222"),
            ("tls://bot:hunter2@nats", "tls://***@nats"),
            ("bot:hunter2@nats:4222", "***@nats:4222"),
            (
                "nats://a:hunter2@n1:4222,nats://a:hunter2@n2:4222",
                "nats://***@n1:4222,nats://***@n2:4222",
            ),
            ("nats://tok%40en@nats/?x=a@b", "nats://***@nats/?x=a@b"),
            ("nats://nats:4222", "nats://nats:4222"),
        ] {
            assert_eq!(redacted(url), shown);
        }
    }

    #[test]
    fn a_user_and_password_in_the_url_become_nats_user_and_password() {
        let mut config = NatsConfig {
            url: "nats://bot:p%40ss:w%C3%B6rd@n1:4222,nats://bot:p%40ss:w%C3%B6rd@n2:4222"
                .to_owned(),
            ..NatsConfig::default()
        };
        assert_eq!(take_url_credentials(&mut config), Ok(()));
        assert_eq!(config.url, "nats://n1:4222,nats://n2:4222");
        assert_eq!(config.user.as_deref(), Some("bot"));
        assert_eq!(
            config.password.as_ref().map(Secret::expose),
            Some("p@ss:wörd")
        );
        assert_eq!(inbox_prefix(&config), "_INBOX.bot");

        let mut plain = NatsConfig::default();
        assert_eq!(take_url_credentials(&mut plain), Ok(()));
        assert_eq!(plain.url, NatsConfig::default().url);
        assert_eq!(plain.user, None);
    }

    #[test]
    fn url_credentials_are_refused_naming_no_value() {
        let refused = |config: NatsConfig| {
            let mut config = config;
            let error = take_url_credentials(&mut config).err().unwrap_or_default();
            assert!(error.starts_with("nats.url"), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
            assert!(!config.url.contains("hunter2"), "{}", config.url);
        };
        let url = |url: &str| NatsConfig {
            url: url.to_owned(),
            ..NatsConfig::default()
        };
        refused(url("nats://hunter2@nats:4222"));
        refused(url("nats://a:hunter2@n1,nats://b:hunter2@n2"));
        refused(url("nats://a:hunter2%zz@nats"));
        refused(NatsConfig {
            user: Some("bot".to_owned()),
            ..url("nats://a:hunter2@nats")
        });
        refused(NatsConfig {
            nkey_seed: Some(Secret::new("SUAB")),
            ..url("nats://a:hunter2@nats")
        });
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
