//! `helpline config show`: the configuration a process would run with, one key per line,
//! each with the layer its value came from (default, built-in region, file, environment),
//! secrets never printed.

use std::path::Path;

use figment::value::{Dict, Value};
use figment::{Figment, Source};

use crate::config::{Config, ConfigError, layers};

/// Words that mark a key as a secret: its value is shown as `***`, whatever it is.
const SECRET_WORDS: [&str; 3] = ["secret", "password", "seed"];

/// Keys ending in `_key` that hold no secret: a public key and the development-key
/// switches.
const PUBLIC_KEYS: [&str; 2] = ["verify_key", "allow_dev_key"];

/// The effective configuration as text, and the problems that would stop a process
/// (empty when it can run).
pub fn show(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(String, Option<ConfigError>), ConfigError> {
    let figment = layers(file, vars)?;
    let merged: Dict = figment
        .extract_lossy()
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    // What type each key has by default: a variable's text shows as the number or
    // boolean the process reads from it.
    let defaults = Value::serialize(Config::default()).unwrap_or(Value::from(Dict::new()));
    let mut lines = Vec::new();
    leaves(&figment, &defaults, "", &merged, &mut lines);
    let problem = Config::from_layers(&figment).err();
    Ok((lines.join("\n") + "\n", problem))
}

fn leaves(figment: &Figment, defaults: &Value, prefix: &str, dict: &Dict, lines: &mut Vec<String>) {
    for (key, value) in dict {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Dict(_, nested) if !nested.is_empty() => {
                leaves(figment, defaults, &path, nested, lines)
            }
            value => {
                let typed = match (defaults.find_ref(&path), value) {
                    (Some(Value::Num(..)), Value::String(..)) => {
                        value.to_num_lossy().map(|n| Value::Num(value.tag(), n))
                    }
                    (Some(Value::Bool(..)), Value::String(..)) => {
                        value.to_bool_lossy().map(|b| Value::Bool(value.tag(), b))
                    }
                    _ => None,
                };
                let shown = shown(key, typed.as_ref().unwrap_or(value));
                lines.push(format!("{path} = {shown}  # {}", origin(figment, &path)));
            }
        }
    }
}

/// A key whose name marks a secret (`app_secret`, `access_token`, `verify_token`,
/// `nats.password`, `nkey_seed`, `privacy.master_key`, `auth.signing_key`, …); a
/// `max_token_lifetime_secs` or a `verify_key` is not one.
fn is_secret(key: &str) -> bool {
    key == "key"
        || key.ends_with("token")
        || (key.ends_with("_key") && !PUBLIC_KEYS.contains(&key))
        || SECRET_WORDS.iter().any(|word| key.contains(word))
}

/// The value of `key` as printed: `***` for a secret, else as TOML would write it.
fn shown(key: &str, value: &Value) -> String {
    if is_secret(key) {
        "\"***\"".to_owned()
    } else {
        render(value)
    }
}

/// The value as TOML would write it, with credentials in URLs hidden.
fn render(value: &Value) -> String {
    match value {
        Value::String(_, text) if text.contains("://") => {
            format!("{:?}", crate::nats::redacted(text))
        }
        Value::String(_, text) => format!("{text:?}"),
        Value::Array(_, items) => format!(
            "[{}]",
            items.iter().map(render).collect::<Vec<_>>().join(", ")
        ),
        Value::Dict(_, dict) => format!(
            "{{ {} }}",
            dict.iter()
                .map(|(key, value)| format!("{key} = {}", shown(key, value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_u128()
            .map(|n| n.to_string())
            .or_else(|| n.to_i128().map(|n| n.to_string()))
            .or_else(|| n.to_f64().map(|n| n.to_string()))
            .unwrap_or_default(),
        Value::Char(_, c) => format!("{:?}", c.to_string()),
        Value::Empty(..) => "\"\"".to_owned(),
    }
}

/// Which layer the value at `path` came from.
fn origin(figment: &Figment, path: &str) -> String {
    let Some(metadata) = figment.find_metadata(path) else {
        return "default".to_owned();
    };
    match &metadata.source {
        Some(Source::File(file)) => format!("file {}", file.display()),
        _ if metadata.name.contains("environment") => format!("env {}", variable(path)),
        _ => metadata.name.to_string(),
    }
}

/// The `HELPLINE_*` variable that sets `path`.
fn variable(path: &str) -> String {
    format!("HELPLINE_{}", path.replace('.', "__").to_ascii_uppercase())
}
