//! The crates' layers, as `cargo metadata` resolves them: no service crate depends on
//! another service crate, directly or through a shared crate, so that each service can be
//! built, tested and reasoned about alone (docs/ARCHITECTURE.md, "Layers").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// The services: each runs on its own in production (`helpline <service>`), and what two of
/// them share lives in a crate below them.
const SERVICES: &[&str] = &[
    "helpline-ingress",
    "helpline-egress",
    "helpline-bot",
    "helpline-routing",
    "helpline-assignment",
    "helpline-feedback",
    "helpline-query",
    "helpline-privacy",
    "helpline-console",
    "helpline-notify",
];

/// The crates that compose services (the binary and its bench) and may depend on any.
const COMPOSERS: &[&str] = &["helpline", "helpline-bench"];

/// Each workspace crate and the workspace crates it needs to build (normal and build
/// dependencies; dev-dependencies only reach its own tests).
fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("a list of packages");
    let members: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    packages
        .iter()
        .map(|package| {
            let name = package["name"].as_str().unwrap_or_default().to_owned();
            let needs = package["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|dependency| dependency["kind"].as_str() != Some("dev"))
                .filter_map(|dependency| dependency["name"].as_str())
                .filter(|dependency| members.contains(*dependency))
                .map(str::to_owned)
                .collect();
            (name, needs)
        })
        .collect()
}

/// Every workspace crate `root` needs, directly or through another.
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = vec![root];
    while let Some(name) = todo.pop() {
        for next in graph.get(name).into_iter().flatten() {
            if seen.insert(next.clone()) {
                todo.push(next);
            }
        }
    }
    seen
}

#[test]
fn no_service_crate_depends_on_another_service_crate() {
    let graph = workspace_graph();
    let mut breaches = Vec::new();
    for service in SERVICES {
        assert!(
            graph.contains_key(*service),
            "{service} is not a workspace crate any more: update SERVICES"
        );
        for needed in reaches(&graph, service) {
            if SERVICES.contains(&needed.as_str()) || COMPOSERS.contains(&needed.as_str()) {
                breaches.push(format!("{service} -> {needed}"));
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "service crates that depend on another service (move what they share below them): {breaches:?}"
    );
}

#[test]
fn shared_crates_depend_on_no_service_crate() {
    let graph = workspace_graph();
    let mut breaches = Vec::new();
    for (name, _) in graph.iter() {
        let shared = !SERVICES.contains(&name.as_str()) && !COMPOSERS.contains(&name.as_str());
        if !shared {
            continue;
        }
        for needed in reaches(&graph, name) {
            if SERVICES.contains(&needed.as_str()) {
                breaches.push(format!("{name} -> {needed}"));
            }
        }
    }
    assert!(
        breaches.is_empty(),
        "shared crates that depend on a service: {breaches:?}"
    );
}

#[test]
fn every_workspace_crate_is_placed_in_a_layer() {
    // A new crate must be named a service, a composer or shared on purpose: a service
    // added without a line in SERVICES would escape the first rule.
    let graph = workspace_graph();
    let shared = [
        "helpline-proto",
        "helpline-domain",
        "helpline-channels",
        "helpline-eventstore",
        "helpline-region",
        "helpline-flows",
        "helpline-auth",
        "helpline-telemetry",
        "helpline-testkit",
    ];
    let unplaced: Vec<&String> = graph
        .keys()
        .filter(|name| {
            !SERVICES.contains(&name.as_str())
                && !COMPOSERS.contains(&name.as_str())
                && !shared.contains(&name.as_str())
        })
        .collect();
    assert!(
        unplaced.is_empty(),
        "crates in no layer (add them to SERVICES, COMPOSERS or the shared list): {unplaced:?}"
    );
}
