//! `helpline config check FILE`: validates a region's configuration file as it stands
//! (no `HELPLINE_*` variables), and names the file, the line and the key of every problem,
//! so an operator fixes a rollout before it reaches a cluster.

use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};

use crate::config::{Config, DEFAULT_REGION, region_file, region_named_in};

/// One problem, as printed: `FILE:LINE: KEY: MESSAGE` (the line when it can be found),
/// or `FILE:LINE: KEY: warning: MESSAGE` for a warning, which alone fails no check.
#[derive(Debug, PartialEq, Eq)]
pub struct Finding {
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
    pub warning: bool,
}

/// Every problem of `file`; empty when the configuration can be used.
pub fn check(file: &Path) -> Vec<Finding> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            return vec![Finding {
                line: None,
                key: String::new(),
                message: format!("cannot read: {e}"),
                warning: false,
            }];
        }
    };
    check_text(&text)
}

fn check_text(text: &str) -> Vec<Finding> {
    if let Err(e) = text.parse::<toml::Table>() {
        return vec![Finding {
            line: e.span().map(|span| line_of(text, span.start)),
            key: String::new(),
            message: e.message().to_owned(),
            warning: false,
        }];
    }
    // Layered as a process layers it: over the built-in file of the region it names.
    let region = region_named_in(text).unwrap_or_else(|| DEFAULT_REGION.to_owned());
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(base) = region_file(&region) {
        figment = figment.merge(Toml::string(base));
    }
    let figment = figment.merge(Toml::string(text));
    let config: Config = match figment.extract() {
        Ok(config) => config,
        Err(errors) => {
            return errors
                .into_iter()
                .map(|error| {
                    let key = key_of(&error.path);
                    Finding {
                        line: locate(text, &key),
                        message: error.kind.to_string(),
                        key,
                        warning: false,
                    }
                })
                .collect();
        }
    };
    let mut findings: Vec<Finding> = config
        .region()
        .validate()
        .into_iter()
        .map(|problem| Finding {
            line: locate(text, &problem.key),
            key: problem.key,
            message: problem.message,
            warning: false,
        })
        .collect();
    let region = config.region();
    if findings.is_empty()
        && let Err(e) = helpline_bot::flows::Flows::for_region(&region)
    {
        findings.push(Finding {
            line: locate(text, "locale.languages"),
            key: "locale.languages".to_owned(),
            message: format!("the bot's flows: {e}"),
            warning: false,
        });
    }
    for (key, message) in crate::nats::problems(&config.nats) {
        findings.push(Finding {
            line: locate(text, key),
            key: key.to_owned(),
            message,
            warning: false,
        });
    }
    // The region file becomes a ConfigMap: NATS secrets come from each service's Secret.
    for (key, set) in [
        ("nats.password", config.nats.password.is_some()),
        ("nats.nkey_seed", config.nats.nkey_seed.is_some()),
    ] {
        if set {
            findings.push(Finding {
                line: locate(text, key),
                key: key.to_owned(),
                message: format!(
                    "a secret does not belong in the region file; set HELPLINE_{} from the service's Secret",
                    key.to_ascii_uppercase().replace('.', "__")
                ),
                warning: false,
            });
        }
    }
    if crate::nats::redacted(&config.nats.url) != config.nats.url {
        findings.push(Finding {
            line: locate(text, "nats.url"),
            key: "nats.url".to_owned(),
            message: "holds a user and password; a secret does not belong in the region file: set nats.user here and HELPLINE_NATS__PASSWORD from the service's Secret".to_owned(),
            warning: false,
        });
    }
    // Development keys, and secrets that are weak or say they are local-only
    // (`crate::secrets`): a service with this file refuses the first and warns of the rest.
    for key in ["auth.allow_dev_key", "privacy.allow_dev_key"] {
        let set = match key {
            "auth.allow_dev_key" => config.auth.allow_dev_key,
            _ => config.privacy.allow_dev_key,
        };
        if set {
            findings.push(Finding {
                line: locate(text, key),
                key: key.to_owned(),
                message: "the public development keys are only for `helpline dev` and runs without a configuration file; a service given this file does not start".to_owned(),
                warning: false,
            });
        }
    }
    for (key, value) in crate::secrets::secrets(&config) {
        if let Some(verdict) = crate::secrets::assess(key, value) {
            findings.push(Finding {
                line: locate(text, key),
                key: key.to_owned(),
                message: verdict.message(),
                warning: verdict == crate::secrets::Verdict::LocalOnly,
            });
        }
    }
    if let Err(e) = helpline_eventstore::Layout::new(&config.region) {
        findings.push(Finding {
            line: locate(text, "region"),
            key: "region".to_owned(),
            message: e.to_string(),
            warning: false,
        });
    }
    findings
}

/// figment's path (`["routing", "rules", "1", "queue"]`) as the region crate writes keys
/// (`routing.rules[1].queue`).
fn key_of(path: &[String]) -> String {
    let mut key = String::new();
    for segment in path {
        if segment.chars().all(|c| c.is_ascii_digit()) && !key.is_empty() {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `key` (e.g. `routing.rules[1].queue`) is written: the `queue = …` line
/// inside the second `[[routing.rules]]` table, or the table's header when the key names
/// a table, or nothing when the key is not in the file (a default).
fn locate(text: &str, key: &str) -> Option<usize> {
    let wanted = parse_key(key);
    let mut table: Vec<(String, Option<usize>)> = Vec::new();
    let mut array_counts: std::collections::HashMap<String, usize> = Default::default();
    let mut header_line = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_owned();
            let count = array_counts.entry(name.clone()).or_insert(0);
            table = plain_path(&name);
            if let Some(last) = table.last_mut() {
                last.1 = Some(*count);
            }
            *count += 1;
            if table == wanted {
                header_line = Some(number + 1);
            }
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = plain_path(name.trim());
            if table == wanted {
                header_line = Some(number + 1);
            }
        } else if let Some((name, _)) = line.split_once('=') {
            let mut full = table.clone();
            full.push((name.trim().trim_matches('"').to_owned(), None));
            let without_index: Vec<_> = wanted.iter().map(|(n, _)| (n.clone(), None)).collect();
            if full == wanted
                || (wanted.last().is_some_and(|l| l.1.is_some()) && full == without_index)
            {
                return Some(number + 1);
            }
        }
    }
    header_line
}

fn plain_path(dotted: &str) -> Vec<(String, Option<usize>)> {
    dotted
        .split('.')
        .map(|part| (part.trim().trim_matches('"').to_owned(), None))
        .collect()
}

/// `routing.rules[1].queue` → `[("routing", None), ("rules", Some(1)), ("queue", None)]`.
fn parse_key(key: &str) -> Vec<(String, Option<usize>)> {
    key.split('.')
        .map(|part| match part.split_once('[') {
            Some((name, index)) => (name.to_owned(), index.trim_end_matches(']').parse().ok()),
            None => (part.to_owned(), None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    /// Germany's region file as shipped.
    fn germany() -> &'static str {
        crate::config::region_file("de").unwrap_or_default()
    }

    #[test]
    fn the_shipped_german_file_passes() {
        assert_eq!(check_text(germany()), vec![]);
    }

    #[test]
    fn a_rule_naming_a_missing_queue_is_reported_at_its_line() {
        let broken = germany().replacen("queue = \"de-english\"", "queue = \"de-nowhere\"", 1);
        let findings = check_text(&broken);
        let expected_line = broken
            .lines()
            .position(|l| l.contains("de-nowhere"))
            .map(|i| i + 1);
        assert_eq!(
            findings,
            vec![Finding {
                line: expected_line,
                key: "routing.rules[1].queue".to_owned(),
                message: "no queue de-nowhere in [[queues]]".to_owned(),
                warning: false,
            }]
        );
    }

    #[test]
    fn a_wrong_type_names_the_key_and_line() {
        let broken = germany().replacen("max_serial_tries = 2", "max_serial_tries = \"two\"", 1);
        let findings = check_text(&broken);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].key, "bot.max_serial_tries");
        assert_eq!(
            findings[0].line,
            broken
                .lines()
                .position(|l| l.contains("\"two\""))
                .map(|i| i + 1)
        );
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let findings = check_text("region = \"de\"\n[locale\ncountry = \"DE\"\n");
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].line, Some(2));
    }

    #[test]
    fn a_language_without_a_flow_is_named() {
        let broken = germany().replacen(
            "languages = [\"de\", \"en\"]",
            "languages = [\"de\", \"xx\"]",
            1,
        );
        let findings = check_text(&broken);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].key, "locale.languages");
        assert!(findings[0].message.contains("xx"), "{findings:?}");
    }

    #[test]
    fn nats_users_and_tls_are_accepted_but_secrets_are_not() {
        let nats = "[nats]\nurl = \"tls://nats:4222\"\nuser = \"bot\"\ntls_ca_file = \"/etc/nats-tls/ca.crt\"\n\n[eventstore]\nensure_on_start = false\n";
        let file = format!("{}\n{nats}", germany());
        let findings = check_text(&file);
        assert_eq!(
            findings.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(),
            ["nats.password"],
            "a user needs a password: {findings:?}"
        );
        let with_password = file.replacen(
            "user = \"bot\"",
            "user = \"bot\"\npassword = \"a-password-long-enough\"",
            1,
        );
        let findings = check_text(&with_password);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].key, "nats.password");
        assert_eq!(
            findings[0].line,
            with_password
                .lines()
                .position(|l| l.starts_with("password"))
                .map(|i| i + 1)
        );
        assert!(
            findings[0].message.contains("HELPLINE_NATS__PASSWORD"),
            "{findings:?}"
        );
    }

    #[test]
    fn a_password_in_the_nats_url_is_named_but_not_shown() {
        let file = format!(
            "{}\n[nats]\nurl = \"nats://bot:hunter2@nats:4222\"\n",
            germany()
        );
        let findings = check_text(&file);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].key, "nats.url");
        assert_eq!(findings[0].line, Some(file.lines().count()));
        assert!(!findings[0].message.contains("hunter2"), "{findings:?}");
    }

    #[test]
    fn development_keys_and_weak_secrets_are_named_local_only_ones_warned_of() {
        let development = helpline_assignment::AuthKey::DEVELOPMENT_SECRET;
        let tables = format!(
            "[auth]\njwt_secret = \"{development}\"\nallow_dev_key = true\n\n\
             [channels.web]\nshared_secret = \"compose-local-only-web-secret\"\n\n\
             [channels.viber]\nauth_token = \"1234567890123456789012345\"\n\n"
        );
        let privacy = format!(
            "master_key = \"{}\"\n",
            helpline_eventstore::MasterKey::development_hex()
        );
        // The shipped file has a `[privacy]`: the tables go before it, the key into it.
        let file = germany().replacen("[privacy]\n", &format!("{tables}[privacy]\n{privacy}"), 1);
        let line = |needle: &str| {
            file.lines()
                .position(|l| l.starts_with(needle))
                .map(|i| i + 1)
        };
        let findings = check_text(&file);
        let seen: Vec<(&str, Option<usize>, bool)> = findings
            .iter()
            .map(|f| (f.key.as_str(), f.line, f.warning))
            .collect();
        assert_eq!(
            seen,
            [
                ("auth.allow_dev_key", line("allow_dev_key"), false),
                ("auth.jwt_secret", line("jwt_secret"), false),
                ("privacy.master_key", line("master_key"), false),
                ("channels.viber.auth_token", line("auth_token"), false),
                ("channels.web.shared_secret", line("shared_secret"), true),
            ],
            "{findings:?}"
        );
        for finding in &findings {
            assert!(!finding.message.contains(development), "{finding:?}");
            assert!(!finding.message.contains("123456"), "{finding:?}");
        }
        assert!(findings[1].message.contains("development"), "{findings:?}");
        assert!(findings[3].message.contains("digits"), "{findings:?}");
    }

    #[test]
    fn an_unknown_key_is_named() {
        let findings = check_text(&format!("{}\n[bot2]\nx = 1\n", germany()));
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].message.contains("bot2"), "{findings:?}");
    }
}
