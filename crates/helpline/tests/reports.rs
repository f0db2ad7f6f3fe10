//! Supervisors' reports from a scripted history: `helpline feedback` (a process of its own,
//! a real nats-server) folds the log; `helpline report csat --by agent --period week` and
//! `helpline report sla --by queue` print the figures, and the Reports API answers the
//! same.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use helpline_domain::{
    AgentId, Channel, CloseReason, Customer, Event, MessageBody, MessageId, Personal, QueueId,
    TicketId,
};
use helpline_eventstore::{CommandMeta, EventStore, MasterKey, StoreConfig};
use helpline_proto::v1 as pb;
use helpline_proto::v1::reports_client::ReportsClient;
use helpline_region::Role;
use helpline_testkit::NatsServer;
use tonic::Code;
use uuid::Uuid;

mod process;

use process::KillOnDrop;

const JWT_SECRET: &str = "reports-test-signing-key-of-at-least-32-bytes!";
const MASTER_KEY: &str = "5e8b2d6f0a4c8e1b5d9f3a7c0e4b8d2f610f3a9c0e7b1d4f8a2c6e0b9d3f7a1c";

struct Deployment {
    _nats: NatsServer,
    _helpline: KillOnDrop,
    config: tempfile::NamedTempFile,
    grpc: String,
    store: EventStore,
}

impl Deployment {
    /// `helpline feedback` for the German region as shipped.
    async fn start() -> Deployment {
        let nats = NatsServer::start().await.unwrap();
        let region = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");
        let mut config = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut config, region.as_bytes()).unwrap();
        let (mut command, ports) = process::helpline("feedback", &nats.url());
        command
            .args(["--config", &config.path().display().to_string()])
            .env("HELPLINE_AUTH__JWT_SECRET", JWT_SECRET)
            .env("HELPLINE_PRIVACY__MASTER_KEY", MASTER_KEY)
            .env("HELPLINE_LOG", "warn")
            .stdout(Stdio::null());
        let helpline = KillOnDrop(command.spawn().unwrap());
        let store_config = StoreConfig {
            master_key: MasterKey::from_hex(MASTER_KEY).unwrap(),
            ..StoreConfig::new("de")
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let store = loop {
            match EventStore::open(nats.connect().await.unwrap(), store_config.clone()).await {
                Ok(store) => break store,
                Err(e) => assert!(Instant::now() < deadline, "store never set up: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Deployment {
            _nats: nats,
            _helpline: helpline,
            config,
            grpc: format!("http://127.0.0.1:{}", ports.grpc),
            store,
        }
    }

    /// Appends `events` to a new ticket, each at its Berlin wall-clock time.
    async fn ticket(&self, events: &[(&str, Event)]) {
        let ticket = TicketId(Uuid::now_v7());
        let mut version = 0;
        for (local, event) in events {
            let event = match event {
                Event::TicketOpened { customer, .. } => Event::TicketOpened {
                    ticket,
                    customer: customer.clone(),
                    language: "de".to_owned(),
                },
                other => other.clone(),
            };
            let meta = CommandMeta::new(Uuid::now_v7(), berlin(local));
            version = self
                .store
                .append(ticket, version, &[event], &meta)
                .await
                .unwrap()
                .version;
        }
    }

    /// A client of the Reports API once its projections have read the whole log.
    async fn caught_up(&self) -> ReportsClient<tonic::transport::Channel> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut client) = ReportsClient::connect(self.grpc.clone()).await {
                let csat = client
                    .get_satisfaction(request(
                        pb::GetSatisfactionRequest::default(),
                        Role::Supervisor,
                    ))
                    .await;
                let levels = client
                    .get_service_levels(request(
                        pb::GetServiceLevelsRequest::default(),
                        Role::Supervisor,
                    ))
                    .await;
                if let (Ok(csat), Ok(levels)) = (csat, levels) {
                    let done = |position: Option<&pb::CsatPosition>| {
                        position.is_some_and(|p| {
                            p.replayed && p.applied_sequence == p.stream_last_sequence
                        })
                    };
                    if done(csat.get_ref().position.as_ref())
                        && done(levels.get_ref().position.as_ref())
                    {
                        return client;
                    }
                }
            }
            assert!(Instant::now() < deadline, "the Reports API never caught up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `helpline report <args>` as a supervisor: what it printed.
    fn report(&self, args: &[&str]) -> String {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_helpline"))
            .arg("report")
            .args(args)
            .args(["--config", &self.config.path().display().to_string()])
            .args(["--reports-url", &self.grpc])
            .args(["--token", &token(Role::Supervisor)])
            .env("HELPLINE_AUTH__JWT_SECRET", JWT_SECRET)
            .env("HELPLINE_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "helpline report {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

/// A wall-clock time in Berlin.
fn berlin(local: &str) -> SystemTime {
    let zone = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    let time: jiff::civil::DateTime = local.parse().unwrap();
    SystemTime::from(time.to_zoned(zone).unwrap().timestamp())
}

fn token(role: Role) -> String {
    process::token_for_role(JWT_SECRET, role)
}

fn request<T>(message: T, role: Role) -> tonic::Request<T> {
    process::request_as(JWT_SECRET, message, role)
}

fn opened(channel: Channel) -> Event {
    Event::TicketOpened {
        ticket: TicketId(Uuid::nil()),
        customer: Customer {
            channel,
            contact: Personal::from("4915112345678"),
            display_name: None,
        },
        language: "de".to_owned(),
    }
}

fn queued(queue: &str) -> Event {
    Event::TicketQueued {
        queue: QueueId::new(queue),
    }
}

fn agent_writes(agent: &str) -> Event {
    Event::AgentMessageSent {
        agent: AgentId::new(agent),
        message: MessageId(Uuid::now_v7()),
        body: MessageBody::Text(Personal::from("Guten Tag, ich helfe Ihnen gern.")),
    }
}

fn resolved(agent: &str) -> Event {
    Event::TicketResolved {
        agent: AgentId::new(agent),
        summary: "repariert".to_owned(),
    }
}

fn rated(score: u8) -> [Event; 3] {
    [
        Event::RatingRequested {
            message: MessageId(Uuid::now_v7()),
        },
        Event::RatingReceived {
            score,
            comment: None,
        },
        Event::TicketClosed {
            reason: CloseReason::Rated,
        },
    ]
}

/// Two weeks of the laptop queue (first response target 30 minutes, resolution 48 hours,
/// mon-fri 08:00-20:00 and sat 10:00-16:00): Anna answers in 20 and 10 minutes (rated 5
/// and 4), Ben in 50 (rated 2); Anna answers a ticket queued on Saturday at 15:50 on
/// Monday at 08:05, which is 15 minutes of working time.
async fn history(d: &Deployment) {
    let [r1, r2, r3] = rated(5);
    d.ticket(&[
        ("2026-11-16T09:59", opened(Channel::WhatsApp)),
        ("2026-11-16T10:00", queued("de-laptops")),
        ("2026-11-16T10:20", agent_writes("anna")),
        ("2026-11-16T10:40", resolved("anna")),
        ("2026-11-16T10:41", r1),
        ("2026-11-16T10:45", r2),
        ("2026-11-16T10:45", r3),
    ])
    .await;
    let [r1, r2, r3] = rated(2);
    d.ticket(&[
        ("2026-11-16T10:59", opened(Channel::Telegram)),
        ("2026-11-16T11:00", queued("de-laptops")),
        ("2026-11-16T11:50", agent_writes("ben")),
        ("2026-11-16T12:00", resolved("ben")),
        ("2026-11-16T12:01", r1),
        ("2026-11-16T12:02", r2),
        ("2026-11-16T12:02", r3),
    ])
    .await;
    let [r1, r2, r3] = rated(4);
    d.ticket(&[
        ("2026-11-24T08:59", opened(Channel::WhatsApp)),
        ("2026-11-24T09:00", queued("de-laptops")),
        ("2026-11-24T09:10", agent_writes("anna")),
        ("2026-11-24T09:30", resolved("anna")),
        ("2026-11-24T09:31", r1),
        ("2026-11-24T09:40", r2),
        ("2026-11-24T09:40", r3),
    ])
    .await;
    d.ticket(&[
        ("2026-11-28T15:49", opened(Channel::WebChat)),
        ("2026-11-28T15:50", queued("de-laptops")),
        ("2026-11-30T08:05", agent_writes("anna")),
        ("2026-11-30T08:06", resolved("anna")),
    ])
    .await;
}

#[tokio::test]
async fn the_report_commands_and_the_reports_api_give_the_scripted_historys_figures() {
    let d = Deployment::start().await;
    history(&d).await;
    let mut client = d.caught_up().await;

    assert_eq!(
        d.report(&["csat", "--by", "agent", "--period", "week"]),
        "\
agent  week      ratings  average  csat_percent  requested  response_rate_percent
anna   2026-W47  1        5.00     100.0         1          100.0
anna   2026-W48  1        4.00     100.0         1          100.0
ben    2026-W47  1        2.00     0.0           1          100.0
"
    );
    // Working time only: Saturday's 10 minutes and Monday's 5 are 15 minutes; the first
    // responses are 20, 50, 10 and 15 minutes (mean 23.75), Ben's missed 30.
    assert_eq!(
        d.report(&["sla", "--by", "queue", "--csv"]),
        "\
queue,tickets,first_response_avg_min,first_response_met,first_response_breached,first_response_attained_percent,\
next_response_avg_min,next_response_met,next_response_breached,next_response_attained_percent,\
resolution_avg_min,resolution_met,resolution_breached,resolution_attained_percent
de-laptops,4,23.8,3,1,75.0,0.0,0,0,100.0,23.8,4,0,100.0
"
    );

    // The same through the API.
    let csat = client
        .get_satisfaction(request(
            pb::GetSatisfactionRequest {
                filter: None,
                group_by: vec![
                    pb::CsatGrouping::Agent.into(),
                    pb::CsatGrouping::Week.into(),
                ],
            },
            Role::Supervisor,
        ))
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<(String, u32, f64)> = csat
        .rows
        .iter()
        .map(|row| (row.group.join(" "), row.ratings, row.average))
        .collect();
    assert_eq!(
        rows,
        [
            ("anna 2026-W47".to_owned(), 1, 5.0),
            ("anna 2026-W48".to_owned(), 1, 4.0),
            ("ben 2026-W47".to_owned(), 1, 2.0),
        ]
    );
    let levels = client
        .get_service_levels(request(
            pb::GetServiceLevelsRequest {
                filter: Some(pb::CsatFilter {
                    agent: "anna".to_owned(),
                    ..Default::default()
                }),
                group_by: vec![pb::CsatGrouping::Queue.into()],
            },
            Role::Supervisor,
        ))
        .await
        .unwrap()
        .into_inner();
    let row = &levels.rows[0];
    let first = row.first_response.unwrap_or_default();
    assert_eq!(
        (
            row.tickets,
            first.met,
            first.breached,
            first.average_seconds
        ),
        (3, 3, 0, 15.0 * 60.0)
    );

    // Reports rate agents by name: supervisors only.
    let denied = client
        .get_service_levels(request(pb::GetServiceLevelsRequest::default(), Role::Agent))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unauthenticated = client
        .get_satisfaction(tonic::Request::new(pb::GetSatisfactionRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
}

/// The supervisor's alert feed: an SLA alarm recorded on a ticket reaches the stream of a
/// supervisor watching its queue, with the queue and the log position to resume from;
/// agents may not watch, and a queue the region lacks is a bad request.
#[tokio::test]
async fn a_supervisor_watching_service_levels_is_alerted_of_each_alarm() {
    let d = Deployment::start().await;
    let mut client = d.caught_up().await;
    let denied = client
        .watch_service_level_alarms(request(
            pb::WatchServiceLevelAlarmsRequest::default(),
            Role::Agent,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unknown = client
        .watch_service_level_alarms(request(
            pb::WatchServiceLevelAlarmsRequest {
                queue: "xx-nowhere".to_owned(),
                after_sequence: 0,
            },
            Role::Supervisor,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    // A feed ends with the token that opened it.
    let short = helpline_assignment::auth::issue(
        &helpline_assignment::AuthKey::new(JWT_SECRET).unwrap(),
        "sabine",
        Role::Supervisor,
        Duration::from_secs(2),
        SystemTime::now(),
    )
    .unwrap();
    let mut short_lived = tonic::Request::new(pb::WatchServiceLevelAlarmsRequest::default());
    short_lived
        .metadata_mut()
        .insert("authorization", format!("Bearer {short}").parse().unwrap());
    let mut ending = client
        .watch_service_level_alarms(short_lived)
        .await
        .unwrap()
        .into_inner();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match ending.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
        }
    })
    .await
    .expect("the feed outlived its token");
    assert_eq!(ended, Some(Code::Unauthenticated));

    let mut alarms = client
        .watch_service_level_alarms(request(
            pb::WatchServiceLevelAlarmsRequest {
                queue: "de-laptops".to_owned(),
                after_sequence: 0,
            },
            Role::Supervisor,
        ))
        .await
        .unwrap()
        .into_inner();
    // A ticket queued for laptops, whose first response is then recorded as breached.
    let ticket = TicketId(Uuid::now_v7());
    let opened = Event::TicketOpened {
        ticket,
        customer: Customer {
            channel: Channel::WhatsApp,
            contact: Personal::from("4915199990000"),
            display_name: None,
        },
        language: "de".to_owned(),
    };
    let meta = || CommandMeta::new(Uuid::now_v7(), SystemTime::now());
    let version = d
        .store
        .append(ticket, 0, &[opened, queued("de-laptops")], &meta())
        .await
        .unwrap()
        .version;
    let breach = Event::SlaAlarm {
        clock: helpline_domain::sla::SlaClock::FirstResponse,
        level: helpline_domain::sla::SlaLevel::Breached,
        target_secs: 900,
        run_since_ms: 0,
    };
    let stored = d
        .store
        .append(ticket, version, &[breach], &meta())
        .await
        .unwrap()
        .version;
    let alarm = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let answer = alarms.message().await.unwrap().expect("the feed goes on");
            let alarm = answer.alarm.expect("an answer holds its alarm");
            if alarm.ticket_id == ticket.to_string() {
                return alarm;
            }
        }
    })
    .await
    .expect("the supervisor is alerted");
    assert_eq!(
        (
            alarm.queue.as_str(),
            alarm.clock,
            alarm.breached,
            alarm.target_seconds,
            alarm.sequence
        ),
        (
            "de-laptops",
            pb::SlaClock::FirstResponse as i32,
            true,
            900,
            stored
        )
    );
}
