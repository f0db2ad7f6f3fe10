//! The configuration as the binary reads it: what it refuses before anything starts (exit
//! code 2), and that no refusal, at start or in `helpline config check`, quotes a secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

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
fn a_secret_that_reads_as_a_number_is_refused_by_key_never_by_value() {
    // figment reads an all-digit environment value as a number; serde's message for a
    // number where a string belongs would quote it.
    let digits = "907856341209785634";
    for (variable, key) in [
        ("HELPLINE_AUTH__JWT_SECRET", "auth.jwt_secret"),
        ("HELPLINE_PRIVACY__MASTER_KEY", "privacy.master_key"),
        ("HELPLINE_NATS__PASSWORD", "nats.password"),
        (
            "HELPLINE_CHANNELS__WEB__SHARED_SECRET",
            "channels.web.shared_secret",
        ),
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
