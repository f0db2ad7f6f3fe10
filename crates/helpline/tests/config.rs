//! The configuration as the binary reads it: what it refuses before anything starts (exit
//! code 2), and that no refusal, at start or in `helpline config check`, quotes a secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use helpline_assignment::AuthKey;
use helpline_eventstore::MasterKey;

/// Germany's region file: with it, a process is a deployment.
fn region_file() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/k8s/overlays/de/helpline.toml")
        .display()
        .to_string()
}

/// A deployment's own keys, strong and unmarked.
const JWT_SECRET: &str = "k3Jd8-Qm2x_Lp0vZr7Tn4wYb6Hc1Fs9Ge5";
const MASTER_KEY: &str = "5f3a9c0e7b1d4f8a2c6e0b9d3f7a1c5e8b2d6f0a4c8e1b5d9f3a7c0e4b8d2f61";

/// `helpline ARGS` with `env`, and no configuration file unless the arguments name one.
fn helpline(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(args)
        .env_remove("HELPLINE_CONFIG")
        .envs(env.iter().copied())
        .env("HELPLINE_LOG", "warn")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_secret_of_digits_is_text_and_a_refusal_names_its_key_never_its_value() {
    // An environment value is text, digits or not: a signing secret of 40 digits signs.
    let digits = "9078563412097856341209785634120978563412";
    let output = helpline(
        &["agent-token", "--agent", "anna"],
        &[("HELPLINE_AUTH__JWT_SECRET", digits)],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "a secret of digits was refused: {}",
        stderr(&output)
    );
    // One that is refused for what it is names the key and never quotes the value.
    let digits = &digits[..18];
    for (variable, key) in [
        ("HELPLINE_AUTH__JWT_SECRET", "auth.jwt_secret"),
        ("HELPLINE_PRIVACY__MASTER_KEY", "privacy.master_key"),
        ("HELPLINE_NATS__PASSWORD", "nats."),
    ] {
        let output = helpline(&["all"], &[(variable, digits)]);
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{variable}: {said}");
        assert!(said.to_lowercase().contains(key), "{variable}: {said}");
        assert!(!said.contains(&digits[..6]), "{variable} echoed: {said}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("helpline.toml");
    std::fs::write(
        &file,
        format!("region = \"de\"\n\n[auth]\njwt_secret = {digits}\n"),
    )
    .unwrap();
    let output = helpline(&["config", "check", &file.display().to_string()], &[]);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(said.contains(":4: auth.jwt_secret: "), "{said}");
    assert!(!said.contains(&digits[..6]), "config check echoed: {said}");
}

#[test]
fn a_process_with_a_configuration_file_refuses_the_development_keys() {
    let file = region_file();
    let with_file = |command: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["--config", file.as_str()];
        args.extend_from_slice(command);
        let mut env = env.to_vec();
        for (variable, value) in [
            ("HELPLINE_AUTH__JWT_SECRET", JWT_SECRET),
            ("HELPLINE_PRIVACY__MASTER_KEY", MASTER_KEY),
        ] {
            if !env.iter().any(|(name, _)| *name == variable) {
                env.push((variable, value));
            }
        }
        helpline(&args, &env)
    };
    let token = ["agent-token", "--agent", "anna"];
    let fine = with_file(&token, &[]);
    assert!(fine.status.success(), "{}", stderr(&fine));

    let development_master = MasterKey::development_hex();
    for (command, env, key) in [
        (
            &["all"][..],
            &[("HELPLINE_AUTH__ALLOW_DEV_KEY", "true")][..],
            "auth.allow_dev_key",
        ),
        (
            &["all"],
            &[("HELPLINE_PRIVACY__ALLOW_DEV_KEY", "true")],
            "privacy.allow_dev_key",
        ),
        (
            &token,
            &[("HELPLINE_AUTH__ALLOW_DEV_KEY", "true")],
            "auth.allow_dev_key",
        ),
        (
            &["all"],
            &[("HELPLINE_AUTH__JWT_SECRET", AuthKey::DEVELOPMENT_SECRET)],
            "auth.jwt_secret",
        ),
        (
            &["all"],
            &[("HELPLINE_PRIVACY__MASTER_KEY", development_master.as_str())],
            "privacy.master_key",
        ),
        (
            &["ingress"],
            &[(
                "HELPLINE_CHANNELS__WEB__SHARED_SECRET",
                AuthKey::DEVELOPMENT_SECRET,
            )],
            "channels.web.shared_secret",
        ),
    ] {
        let output = with_file(command, env);
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{command:?} {env:?}: {said}");
        assert!(said.contains(key), "{command:?} {env:?}: {said}");
        assert!(
            !said.contains("never-use-it"),
            "a secret was echoed: {said}"
        );
        assert!(!said.contains(&development_master[..12]), "echoed: {said}");
    }

    // Without a file the same process is local: the development keys sign its tokens.
    let local = helpline(&token, &[("HELPLINE_AUTH__ALLOW_DEV_KEY", "true")]);
    assert!(local.status.success(), "{}", stderr(&local));
}

#[test]
fn a_local_only_or_weak_secret_is_only_a_warning() {
    let file = region_file();
    let local_only = "compose-local-only-agentdesk-signing-key-0001";
    let output = helpline(
        &["--config", &file, "agent-token", "--agent", "anna"],
        &[
            ("HELPLINE_AUTH__JWT_SECRET", local_only),
            ("HELPLINE_PRIVACY__MASTER_KEY", MASTER_KEY),
            ("HELPLINE_NATS__USER", "bot"),
            ("HELPLINE_NATS__PASSWORD", "hunter2hunter2"),
        ],
    );
    let said = stderr(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("auth.jwt_secret"), "{said}");
    assert!(said.contains("local-only"), "{said}");
    assert!(said.contains("nats.password"), "{said}");
    assert!(
        !said.contains("agentdesk-signing"),
        "a secret was echoed: {said}"
    );
    assert!(!said.contains("hunter2"), "a secret was echoed: {said}");
}

#[test]
fn config_check_names_development_and_weak_secrets_and_warns_of_local_only_ones() {
    let dir = tempfile::tempdir().unwrap();
    let region = std::fs::read_to_string(region_file()).unwrap();
    // `tables` go before the file's own `[privacy]`, `privacy` into it.
    let check = |tables: &str, privacy: &str| {
        let file = dir.path().join("helpline.toml");
        let text = region.replacen("[privacy]\n", &format!("{tables}\n[privacy]\n{privacy}"), 1);
        std::fs::write(&file, text).unwrap();
        let output = helpline(&["config", "check", &file.display().to_string()], &[]);
        (output.status.code(), stderr(&output))
    };
    let (code, said) = check(
        &format!(
            "[auth]\nallow_dev_key = true\njwt_secret = \"{}\"\n\n[channels.web]\nshared_secret = \"aaaaaaaaaaaaaaaaaaaaaaaa\"\n",
            AuthKey::DEVELOPMENT_SECRET,
        ),
        &format!("master_key = \"{}\"\n", MasterKey::development_hex()),
    );
    assert_eq!(code, Some(2), "{said}");
    for key in [
        "auth.allow_dev_key",
        "auth.jwt_secret",
        "privacy.master_key",
        "channels.web.shared_secret",
    ] {
        assert!(said.contains(&format!(": {key}: ")), "{key}: {said}");
    }
    assert!(
        !said.contains("never-use-it"),
        "a secret was echoed: {said}"
    );
    assert!(!said.contains("aaaaaaaa"), "a secret was echoed: {said}");

    let (code, said) = check(
        "[channels.web]\nshared_secret = \"sim-local-only-web-shared-secret\"\ncallback_url = \"https://chat.example.com/helpline\"\n",
        "",
    );
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(": channels.web.shared_secret: warning: "),
        "{said}"
    );
}

#[test]
fn config_show_names_where_each_value_came_from_and_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("helpline.toml");
    std::fs::write(
        &file,
        "[ingress]\nlisten = \"0.0.0.0:9443\"\n\n[channels.telegram]\nsecret_token = \"tg-file-secret-value\"\n",
    )
    .unwrap();
    let secrets = [
        ("HELPLINE_NATS__USER", "ingress"),
        ("HELPLINE_NATS__PASSWORD", "nats-env-password-value"),
        ("HELPLINE_PRIVACY__MASTER_KEY", MASTER_KEY),
        ("HELPLINE_AUTH__JWT_SECRET", JWT_SECRET),
        (
            "HELPLINE_CHANNELS__WHATSAPP__APP_SECRET",
            "wa-env-app-secret-value",
        ),
        ("HELPLINE_CHANNELS__WHATSAPP__VERIFY_TOKEN", "20240501777"),
        (
            "HELPLINE_CHANNELS__WHATSAPP__ACCESS_TOKEN",
            "EAAG-env-token",
        ),
        (
            "HELPLINE_CHANNELS__WHATSAPP__PHONE_NUMBER_ID",
            "106540352242922",
        ),
        ("HELPLINE_EVENTSTORE__REPLICAS", "3"),
    ];
    let output = helpline(
        &["config", "show", "--config", &file.display().to_string()],
        &secrets,
    );
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{said}\n{shown}");
    let line = |key: &str| {
        shown
            .lines()
            .find(|line| line.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{shown}"))
            .to_owned()
    };
    let file_name = file.display().to_string();
    for (key, value, origin) in [
        ("region", "\"de\"", "built-in region de".to_owned()),
        (
            "ingress.listen",
            "\"0.0.0.0:9443\"",
            format!("file {file_name}"),
        ),
        (
            "channels.telegram.secret_token",
            "\"***\"",
            format!("file {file_name}"),
        ),
        (
            "nats.password",
            "\"***\"",
            "env HELPLINE_NATS__PASSWORD".to_owned(),
        ),
        (
            "privacy.master_key",
            "\"***\"",
            "env HELPLINE_PRIVACY__MASTER_KEY".to_owned(),
        ),
        (
            "channels.whatsapp.phone_number_id",
            "\"106540352242922\"",
            "env HELPLINE_CHANNELS__WHATSAPP__PHONE_NUMBER_ID".to_owned(),
        ),
        (
            "eventstore.replicas",
            " = 3 ",
            "env HELPLINE_EVENTSTORE__REPLICAS".to_owned(),
        ),
        ("grpc.max_connections", "", "default".to_owned()),
        // Sections without a secret of their own are listed whole, defaults included.
        (
            "ingress.max_body_bytes",
            " = 4194304 ",
            "default".to_owned(),
        ),
        (
            "egress.viber_sender_name",
            "\"Helpline\"",
            "default".to_owned(),
        ),
        (
            "auth.max_token_lifetime_secs",
            " = 43200 ",
            "default".to_owned(),
        ),
        (
            "privacy.retention_every_hours",
            " = 24 ",
            "default".to_owned(),
        ),
    ] {
        let line = line(key);
        assert!(line.contains(value), "{line}");
        assert!(line.ends_with(&format!("# {origin}")), "{line}");
    }
    for (_, secret) in secrets.iter().filter(|(name, _)| {
        !name.ends_with("PHONE_NUMBER_ID") && !name.ends_with("REPLICAS") && !name.ends_with("USER")
    }) {
        assert!(!shown.contains(secret), "printed {secret}:\n{shown}");
        assert!(!said.contains(secret), "said {secret}: {said}");
    }
    assert!(!shown.contains("tg-file-secret-value"), "{shown}");
}

#[test]
fn a_variable_that_is_not_utf8_is_none_of_helplines_business_unless_it_is_helplines() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let not_utf8 = OsStr::from_bytes(b"caf\xe9");
    // A shell's or a CI runner's variable in Latin-1: the configuration reads as ever.
    let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["config", "show"])
        .env_remove("HELPLINE_CONFIG")
        .env("SOMEONE_ELSES", not_utf8)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("built-in region de"));
    // One of helpline's own is refused by name, with no panic.
    let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["config", "show"])
        .env_remove("HELPLINE_CONFIG")
        .env("HELPLINE_NATS__USER", not_utf8)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("HELPLINE_NATS__USER is not UTF-8"));
    assert!(!stderr(&output).contains("panicked"));
}
