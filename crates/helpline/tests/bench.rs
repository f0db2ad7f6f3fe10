//! `helpline bench --quick` with tiny sizes: it runs every phase on its own nats-servers
//! (default sync, then `sync_interval: always`) and writes a JSON report with a figure for
//! each. Figures are measured, never asserted: only the report's structure is checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn a_tiny_bench_reports_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench").join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["--log-format", "json", "bench", "--quick"])
        .args(["--raw-messages", "2000", "--subjects", "100"])
        .args(["--webhooks", "200", "--clients", "4", "--paced-secs", "1"])
        .args(["--e2e-rate", "50", "--e2e-secs", "1"])
        .args([
            "--slow-provider-rate",
            "20",
            "--head-of-line-customers",
            "5",
        ])
        .args(["--conversations", "5", "--rebuild-customers", "50"])
        .args(["--tickets", "100", "--large-tickets", "300"])
        .args(["--ticket-events", "10", "--loads", "20"])
        .args(["--durable-raw-messages", "500", "--durable-webhooks", "50"])
        .args(["--durable-clients", "8", "--phase-secs", "15"])
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
    assert!(
        stdout.contains("| row | system | raw ceiling | ratio | target | met |"),
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
    for pointer in [
        "/raw_publish/per_sec",
        "/raw_replay/per_sec",
        "/webhook_ingest/per_sec",
        "/webhook_ingest/p50_ms",
        "/webhook_ingest/p99_ms",
        "/webhook_ingest/p999_ms",
        "/webhook_ingest/ratio_to_raw_publish",
        "/webhook_ingest_paced/offered_per_sec",
        "/webhook_ingest_paced/p99_ms",
        "/webhook_floor_paced/offered_per_sec",
        "/webhook_floor_paced/p99_ms",
        "/end_to_end/p50_ms",
        "/end_to_end/p99_ms",
        "/end_to_end/p999_ms",
        "/webhook_floor/per_sec",
        "/webhook_ingest/ratio_to_floor",
        "/round_trips/messages_per_webhook",
        "/round_trips/gross_messages_per_conversation",
        "/round_trips/round_trips_per_webhook",
        "/round_trips/round_trips_per_conversation",
        "/round_trips/gross_round_trips_per_conversation",
        "/head_of_line/p50_ms",
        "/end_to_end_slow_provider/p50_ms",
        "/rebuild/key_bucket_entries",
        "/rebuild/per_sec",
        "/rebuild/ratio_to_raw_replay",
        "/rebuild/stream_bytes_per_message",
        "/rebuild/stream_replay/per_sec",
        "/rebuild/ratio_to_stream_replay",
        "/rebuild/cpu_us_per_event",
        "/ticket_load/p50_ms",
        "/ticket_load/p99_ms",
        "/ticket_load_large/p50_ms",
        "/memory/in_process/idle_bytes",
        "/memory/in_process/loaded_bytes",
        "/memory/helpline_all_idle/rss_bytes",
        "/durable/raw_publish/per_sec",
        "/durable/webhook_ingest/per_sec",
        "/durable/end_to_end/p50_ms",
        "/machine/cpus",
    ] {
        positive(pointer);
    }
    assert_eq!(json["raw_publish"]["messages"], 2000);
    assert_eq!(json["raw_replay"]["messages"], 2000);
    assert_eq!(json["webhook_ingest"]["ok"], 200);
    assert_eq!(json["webhook_ingest"]["failed"], 0);
    assert_eq!(json["end_to_end"]["sent"], 50);
    assert_eq!(json["end_to_end_slow_provider"]["sent"], 20);
    assert_eq!(json["head_of_line"]["others"], 5);
    assert_eq!(json["rebuild"]["added"]["customers"], 50);
    // The raw replay of the region stream read every message the rebuild read, and more.
    let stream = json["rebuild"]["stream_replay"]["messages"]
        .as_u64()
        .unwrap();
    assert!(
        stream >= json["rebuild"]["events"].as_u64().unwrap(),
        "{json:#}"
    );
    assert_eq!(json["ticket_load"]["events"], 10);
    assert_eq!(json["ticket_load"]["tickets"], 100);
    assert_eq!(json["ticket_load_large"]["events"], 10);
    assert_eq!(json["ticket_load_large"]["tickets"], 300);
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 20, "{json:#}");
    for row in rows {
        for field in ["row", "system", "raw_ceiling", "target"] {
            assert!(row[field].is_string(), "{field} in {row}");
        }
        assert!(
            row.get("ratio").is_some() && row.get("met").is_some(),
            "{row}"
        );
    }
}
