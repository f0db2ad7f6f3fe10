//! `helpline rebuild <projection>`: replays the whole log into a fresh projection and says
//! how long it took — the proof that a projection can be thrown away, and the figure that
//! tells how long a service takes to start.
//!
//! Progress goes to stderr: a bar on a terminal, otherwise one line a second (a
//! Kubernetes Job's log has no cursor to move). The summary goes to stdout.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use helpline_eventstore::{EventStore, StoreConfig};
use helpline_feedback::csat::CsatProjection;
use helpline_query::{Progress, Replayed};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::NatsConfig;

/// The projections a rebuild knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProjectionName {
    /// The query service's tickets, timelines and texts.
    Query,
    /// Feedback's CSAT figures.
    Csat,
}

pub async fn run(
    projection: ProjectionName,
    nats: &NatsConfig,
    store_config: StoreConfig,
) -> anyhow::Result<()> {
    let client = crate::nats::connect(nats).await?;
    let store = EventStore::open(client, store_config).await?;
    let name = match projection {
        ProjectionName::Query => "query",
        ProjectionName::Csat => "csat",
    };
    let mut display = Display::new(name);
    let (replayed, tickets) = match projection {
        ProjectionName::Query => {
            let (rebuilt, replayed) =
                helpline_query::rebuild(&store, |progress| display.show(progress)).await?;
            (replayed, rebuilt.ticket_count())
        }
        ProjectionName::Csat => {
            let mut csat = CsatProjection::default();
            let mut tickets = HashSet::new();
            let replayed = helpline_query::replay(
                &store,
                |event| {
                    csat.apply(&event);
                    tickets.insert(event.meta.ticket);
                },
                |progress| display.show(progress),
            )
            .await?;
            (replayed, tickets.len())
        }
    };
    display.finish();
    println!("{}", summary(name, &replayed, tickets));
    Ok(())
}

/// `rebuilt query: 100000 events in 1.52 s (65789 events/s), 10000 tickets, ...`
fn summary(name: &str, replayed: &Replayed, tickets: usize) -> String {
    let undecodable = if replayed.undecodable > 0 {
        format!(", {} undecodable events left out", replayed.undecodable)
    } else {
        String::new()
    };
    format!(
        "rebuilt {name}: {} events in {:.2} s ({:.0} events/s), {tickets} tickets, up to sequence {}{undecodable}",
        replayed.events,
        replayed.elapsed.as_secs_f64(),
        replayed.events_per_sec(),
        replayed.last_sequence,
    )
}

/// Shows a replay's progress on stderr.
enum Display {
    Bar(ProgressBar),
    Lines {
        name: &'static str,
        started: Instant,
        last: Option<Instant>,
        latest: Progress,
    },
}

impl Display {
    fn new(name: &'static str) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} events, {per_sec}, {eta} left",
            )
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(format!("rebuild {name}"));
            Self::Bar(bar)
        } else {
            Self::Lines {
                name,
                started: Instant::now(),
                last: None,
                latest: Progress { done: 0, total: 0 },
            }
        }
    }

    fn show(&mut self, progress: Progress) {
        match self {
            Display::Bar(bar) => {
                bar.set_length(progress.total);
                bar.set_position(progress.done);
            }
            Display::Lines {
                name,
                started,
                last,
                latest,
            } => {
                *latest = progress;
                if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    *last = Some(Instant::now());
                    eprintln!("{}", progress_line(name, progress, started.elapsed()));
                }
            }
        }
    }

    fn finish(self) {
        match self {
            Display::Bar(bar) => bar.finish(),
            Display::Lines {
                name,
                started,
                latest,
                ..
            } => eprintln!("{}", progress_line(name, latest, started.elapsed())),
        }
    }
}

/// `rebuild query: 50000/100000 events (50%), 48000 events/s`
fn progress_line(name: &str, progress: Progress, elapsed: Duration) -> String {
    let percent = if progress.total == 0 {
        100.0
    } else {
        100.0 * progress.done as f64 / progress.total as f64
    };
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        progress.done as f64 / secs
    } else {
        0.0
    };
    format!(
        "rebuild {name}: {}/{} events ({percent:.0}%), {rate:.0} events/s",
        progress.done, progress.total
    )
}
