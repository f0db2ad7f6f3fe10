//! `helpline bench --quick` with tiny sizes: it runs every phase on its own nats-server
//! and writes a JSON report with a positive figure for each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_tiny_bench_reports_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench").join("report.json");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["--log-format", "json", "bench", "--quick"])
        .args(["--raw-messages", "2000", "--subjects", "100"])
        .args(["--webhooks", "200", "--clients", "4"])
        .args(["--tickets", "100", "--ticket-events", "10", "--loads", "20"])
        .args(["--phase-secs", "15"])
        .arg("--report")
        .arg(&report)
        .env("HELPLINE_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        stdout.contains("| row | system | raw ceiling | ratio |"),
        "{stdout}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let positive = |pointer: &str| {
        let value = json
            .pointer(pointer)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("{pointer} missing in {json:#}"));
        assert!(value > 0.0, "{pointer} is {value}");
    };
    positive("/raw_publish/per_sec");
    positive("/raw_replay/per_sec");
    positive("/webhook_ingest/per_sec");
    positive("/webhook_ingest/p50_ms");
    positive("/webhook_ingest/p99_ms");
    positive("/webhook_ingest/p999_ms");
    positive("/webhook_ingest/ratio_to_raw_publish");
    positive("/ticket_load/p50_ms");
    positive("/ticket_load/p99_ms");
    assert_eq!(json["raw_publish"]["messages"], 2000);
    assert_eq!(json["raw_replay"]["messages"], 2000);
    assert_eq!(json["webhook_ingest"]["ok"], 200);
    assert_eq!(json["webhook_ingest"]["failed"], 0);
    assert_eq!(json["ticket_load"]["events"], 10);
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{json:#}");
}
