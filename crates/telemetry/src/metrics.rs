//! Process-wide metrics in the Prometheus text format: counters and latency histograms
//! with labels, recorded from anywhere with [`increment`] and [`observe`] and served by
//! each process's `/metrics` ([`render`]).
//!
//! A registry of its own rather than a metrics crate: a handful of series, no exporter
//! threads, nothing to configure. Label values must never hold personal data (channel,
//! consumer, outcome — never a customer, a text or a ticket).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Registry {
    help: BTreeMap<&'static str, (&'static str, Kind)>,
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Histogram,
}

#[derive(Clone, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

fn labels(labels: &[(&'static str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(name, value)| (*name, (*value).to_owned()))
        .collect()
}

/// Adds one to the counter `name` with `labels`.
pub fn increment(name: &'static str, help: &'static str, labels_: &[(&'static str, &str)]) {
    let mut registry = registry().lock().unwrap_or_else(PoisonError::into_inner);
    registry.help.entry(name).or_insert((help, Kind::Counter));
    *registry
        .counters
        .entry((name, labels(labels_)))
        .or_default() += 1;
}

/// Records one observation of `seconds` in the histogram `name` with `labels`.
pub fn observe(
    name: &'static str,
    help: &'static str,
    labels_: &[(&'static str, &str)],
    seconds: f64,
) {
    let mut registry = registry().lock().unwrap_or_else(PoisonError::into_inner);
    registry.help.entry(name).or_insert((help, Kind::Histogram));
    let histogram = registry
        .histograms
        .entry((name, labels(labels_)))
        .or_default();
    histogram.count += 1;
    histogram.sum += seconds;
    for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
        if seconds <= bound {
            *bucket += 1;
        }
    }
}

/// Everything recorded so far, in the Prometheus text exposition format.
pub fn render() -> String {
    let registry = registry().lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = String::new();
    for (name, (help, kind)) in &registry.help {
        let kind_name = match kind {
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind_name}");
        match kind {
            Kind::Counter => {
                for ((series, labels), value) in &registry.counters {
                    if series == name {
                        let _ = writeln!(out, "{name}{} {value}", format_labels(labels, None));
                    }
                }
            }
            Kind::Histogram => {
                for ((series, labels), histogram) in &registry.histograms {
                    if series != name {
                        continue;
                    }
                    for (count, bound) in histogram.buckets.iter().zip(BUCKETS) {
                        let le = bound.to_string();
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {count}",
                            format_labels(labels, Some(&le))
                        );
                    }
                    let all = format_labels(labels, Some("+Inf"));
                    let plain = format_labels(labels, None);
                    let _ = writeln!(out, "{name}_bucket{all} {}", histogram.count);
                    let _ = writeln!(out, "{name}_sum{plain} {}", histogram.sum);
                    let _ = writeln!(out, "{name}_count{plain} {}", histogram.count);
                }
            }
        }
    }
    out
}

fn format_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_prometheus_text_format() {
        increment(
            "test_events_total",
            "Events handled.",
            &[("consumer", "bot"), ("outcome", "ack")],
        );
        increment(
            "test_events_total",
            "Events handled.",
            &[("consumer", "bot"), ("outcome", "ack")],
        );
        observe(
            "test_latency_seconds",
            "Latency.",
            &[("channel", "whatsapp")],
            0.003,
        );
        let text = render();
        assert!(text.contains("# TYPE test_events_total counter"), "{text}");
        assert!(
            text.contains("test_events_total{consumer=\"bot\",outcome=\"ack\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE test_latency_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("test_latency_seconds_bucket{channel=\"whatsapp\",le=\"0.0025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("test_latency_seconds_bucket{channel=\"whatsapp\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("test_latency_seconds_count{channel=\"whatsapp\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        increment(
            "test_escaped_total",
            "Escaping.",
            &[("reason", "a \"b\"\n")],
        );
        assert!(render().contains("test_escaped_total{reason=\"a \\\"b\\\"\\n\"} 1"));
    }
}
