//! Which secrets may run where. `helpline dev` and a run without a configuration file are
//! local: they may use the public development keys (`allow_dev_key`, set by the binary
//! itself). A process given a configuration file (`--config` or `HELPLINE_CONFIG`) is a
//! deployment: it does not start (exit code 2) when `auth.allow_dev_key` or
//! `privacy.allow_dev_key` is set, or when any secret is a development key. A secret whose
//! value says it is local-only (docker-compose's and the channel simulator's contain
//! `local-only`, in their text or, for a hex key, in the bytes it spells) and a weak one
//! only get a warning: compose runs with a configuration file on one machine.
//! `helpline config check` reports the same for a file, by line.
//!
//! No message here ever holds a secret's value, only its key.

use helpline_assignment::AuthKey;
use helpline_eventstore::MasterKey;
use helpline_ingress::Secret;

use crate::config::{Config, ConfigError};

/// What marks a public, local-only secret.
pub const LOCAL_ONLY: &str = "local-only";

/// The fewest characters of a secret without a length of its own (a NATS password, a
/// channel's tokens): guessing 16 random characters is out of reach, 8 is not.
pub const MIN_CHARS: usize = 16;

/// What is wrong with one secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A public development key: refused outside `helpline dev` and runs without a file.
    Development,
    /// Says it is local-only: a warning.
    LocalOnly,
    /// Too short, one character repeated, or only digits: a warning at start, a problem
    /// in `config check`.
    Weak(String),
}

impl Verdict {
    /// What to tell the operator, after the key.
    pub fn message(&self) -> String {
        match self {
            Verdict::Development => "is a public development key, for `helpline dev` and runs without a configuration file only; give the region's own secret".to_owned(),
            Verdict::LocalOnly => format!(
                "is a local-only secret (its value says {LOCAL_ONLY}, as docker-compose's do): fine on one machine, never in a deployment"
            ),
            Verdict::Weak(why) => format!("{why}: a secret must be hard to guess"),
        }
    }
}

/// Every secret of `config` that is set, with its key.
pub fn secrets(config: &Config) -> Vec<(&'static str, &str)> {
    let mut all: Vec<(&'static str, Option<&Secret>)> = vec![
        ("auth.signing_key", config.auth.signing_key.as_ref()),
        ("auth.jwt_secret", config.auth.jwt_secret.as_ref()),
        ("privacy.master_key", config.privacy.master_key.as_ref()),
        ("nats.password", config.nats.password.as_ref()),
        ("nats.nkey_seed", config.nats.nkey_seed.as_ref()),
    ];
    all.extend(
        config
            .channels
            .secrets()
            .into_iter()
            .map(|(key, secret)| (key, Some(secret))),
    );
    all.into_iter()
        .filter_map(|(key, secret)| secret.map(|secret| (key, secret.expose())))
        .collect()
}

/// What is wrong with `value` as the secret `key`, if anything.
pub fn assess(key: &str, value: &str) -> Option<Verdict> {
    let value = value.trim();
    let spelled = hex_bytes(value);
    if value == AuthKey::DEVELOPMENT_SECRET
        || MasterKey::from_hex(value).is_ok_and(|key| key.is_development())
        || spelled.as_deref() == Some(AuthKey::DEVELOPMENT_SECRET.as_bytes())
    {
        return Some(Verdict::Development);
    }
    let marked = |text: &[u8]| {
        text.to_ascii_lowercase()
            .windows(LOCAL_ONLY.len())
            .any(|window| window == LOCAL_ONLY.as_bytes())
    };
    if marked(value.as_bytes()) || spelled.as_deref().is_some_and(marked) {
        return Some(Verdict::LocalOnly);
    }
    let weak = |why: String| Some(Verdict::Weak(why));
    match key {
        "privacy.master_key" => {
            if let Err(e) = MasterKey::from_hex(value) {
                return weak(e.to_string());
            }
        }
        "auth.jwt_secret" if value.len() < AuthKey::MIN_BYTES => {
            return weak(format!("is shorter than {} bytes", AuthKey::MIN_BYTES));
        }
        _ if value.chars().count() < MIN_CHARS => {
            return weak(format!("is shorter than {MIN_CHARS} characters"));
        }
        _ => {}
    }
    let mut chars = value.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return weak("is one character repeated".to_owned());
    }
    if value.chars().all(|c| c.is_ascii_digit()) {
        return weak("is only digits".to_owned());
    }
    None
}

/// The checks of a process with a configuration file, before anything starts: an error
/// for a development key allowed or used, naming every such key; otherwise the warnings
/// to log, as `(key, message)`.
pub fn check_deployment(config: &Config) -> Result<Vec<(String, String)>, ConfigError> {
    let mut refused = Vec::new();
    for (key, set) in [
        ("auth.allow_dev_key", config.auth.allow_dev_key),
        ("privacy.allow_dev_key", config.privacy.allow_dev_key),
    ] {
        if set {
            refused.push(format!(
                "{key} is set, but a process with a configuration file is a deployment: the public development keys are only for `helpline dev` and runs without a file"
            ));
        }
    }
    let mut warnings = Vec::new();
    for (key, value) in secrets(config) {
        match assess(key, value) {
            Some(Verdict::Development) => {
                refused.push(format!("{key} {}", Verdict::Development.message()));
            }
            Some(verdict) => warnings.push((key.to_owned(), verdict.message())),
            None => {}
        }
    }
    if refused.is_empty() {
        Ok(warnings)
    } else {
        Err(ConfigError::Invalid(refused.join("; ")))
    }
}

/// The bytes `text` spells when it is hex (an even number of hex digits).
fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &[u8]) -> String {
        text.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_development_keys_are_development_whatever_the_key() {
        let master = MasterKey::development_hex();
        for key in [
            "auth.jwt_secret",
            "privacy.master_key",
            "channels.web.shared_secret",
        ] {
            for value in [
                AuthKey::DEVELOPMENT_SECRET,
                &hex(AuthKey::DEVELOPMENT_SECRET.as_bytes()),
                &master,
                &master.to_uppercase(),
                &format!("{master}\n"),
            ] {
                assert_eq!(assess(key, value), Some(Verdict::Development), "{key}");
            }
        }
        assert_eq!(assess("privacy.master_key", &hex(&[0xa7; 32])), None);
    }

    #[test]
    fn compose_and_simulator_strings_are_local_only() {
        for value in [
            "compose-local-only-agentdesk-signing-key-0001",
            "compose-local-only-nats-setup",
            "sim-local-only-web-shared-secret",
            &hex(b"compose-local-only-master-key-01"),
        ] {
            assert_eq!(
                assess("channels.web.shared_secret", value),
                Some(Verdict::LocalOnly),
                "{value}"
            );
        }
    }

    #[test]
    fn weak_secrets_are_named_and_strong_ones_pass() {
        let weak = |key: &str, value: &str| matches!(assess(key, value), Some(Verdict::Weak(_)));
        assert!(weak("auth.jwt_secret", "short-but-not-that-short"));
        assert!(weak("auth.jwt_secret", &"x".repeat(40)));
        assert!(weak(
            "auth.jwt_secret",
            &"7".repeat(33).replacen('7', "1", 1)
        ));
        assert!(weak("nats.password", "hunter2"));
        assert!(weak("channels.telegram.secret_token", "1234567890123456"));
        assert!(weak("privacy.master_key", "not hex"));
        assert!(weak("privacy.master_key", &"a".repeat(64)));
        assert!(weak("privacy.master_key", &"1234567890".repeat(7)[..64]));
        assert_eq!(
            assess("auth.jwt_secret", "k3Jd8-Qm2x_Lp0vZr7Tn4wYb6Hc1Fs9Ge5"),
            None
        );
        assert_eq!(assess("nats.password", "p4ssw0rd-of-a-service"), None);
        assert_eq!(
            assess(
                "privacy.master_key",
                "5f3a9c0e7b1d4f8a2c6e0b9d3f7a1c5e8b2d6f0a4c8e1b5d9f3a7c0e4b8d2f61"
            ),
            None
        );
    }

    #[test]
    fn no_message_holds_the_value() {
        for verdict in [
            assess("nats.password", "hunter2"),
            assess("auth.jwt_secret", AuthKey::DEVELOPMENT_SECRET),
            assess("nats.password", "compose-local-only-nats-bot"),
        ] {
            let message = verdict.map(|v| v.message()).unwrap_or_default();
            assert!(!message.contains("hunter2"), "{message}");
            assert!(!message.contains("never-use-it"), "{message}");
            assert!(!message.contains("nats-bot"), "{message}");
        }
    }
}
