//! The CSAT report through a real tonic client, over a projection kept live from a real
//! nats-server, and the same projection rebuilt from the log.

mod support;

use std::sync::Arc;

use helpline_domain::{Channel, Event};
use helpline_feedback::Csat;
use helpline_flows::Flows;
use helpline_proto::v1 as pb;
use helpline_proto::v1::feedback_client::FeedbackClient;
use helpline_region::{RegionConfig, Role};
use helpline_testkit::bearer::{Bearer, test_key};
use support::{Fallible, Harness, TestResult, eventually};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel as GrpcChannel, Server, server::TcpIncoming};

type Client = FeedbackClient<InterceptedService<GrpcChannel, Bearer>>;

/// The German region as shipped (Europe/Berlin; its agents and their roles).
fn germany() -> Arc<RegionConfig> {
    let text = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");
    Arc::new(RegionConfig::from_region_file(text).unwrap_or_else(|e| panic!("{e}")))
}

/// Serves the API over `csat` on 127.0.0.1:0 until `shutdown` fires; a client to it
/// that calls as the region's supervisor.
async fn serve(h: &Harness, csat: &Csat, shutdown: &CancellationToken) -> Fallible<Client> {
    let address = listen(h, csat, shutdown)?;
    let channel = GrpcChannel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    Ok(FeedbackClient::with_interceptor(
        channel,
        Bearer::new("sabine", Role::Supervisor)?,
    ))
}

/// Serves the API over `csat` on 127.0.0.1:0 until `shutdown` fires: where.
fn listen(
    h: &Harness,
    csat: &Csat,
    shutdown: &CancellationToken,
) -> Fallible<std::net::SocketAddr> {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse()?)?;
    let address = incoming.local_addr()?;
    let service =
        helpline_feedback::grpc_service(h.store.clone(), csat.clone(), germany(), test_key());
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()),
    );
    Ok(address)
}

fn request(filter: pb::CsatFilter, group_by: &[pb::CsatGrouping]) -> pb::GetCsatRequest {
    pb::GetCsatRequest {
        filter: Some(filter),
        group_by: group_by.iter().map(|g| (*g).into()).collect(),
    }
}

/// Group, ratings, average, CSAT %, requested, response rate %.
fn figures(row: &pb::CsatRow) -> (String, u32, f64, f64, u32, f64) {
    (
        row.group.join(" "),
        row.ratings,
        row.average,
        row.csat_percent,
        row.ratings_requested,
        row.response_rate_percent,
    )
}

#[tokio::test]
async fn the_report_groups_live_ratings_and_a_rebuilt_projection_equals_the_live_one() -> TestResult
{
    let h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let live = Csat::default();
    let following = {
        let (live, store, shutdown) = (live.clone(), h.store.clone(), shutdown.clone());
        tokio::spawn(async move { live.follow(&store, shutdown).await })
    };
    let feedback = tokio::spawn(helpline_feedback::run(
        h.store.clone(),
        Arc::new(Flows::builtin()),
        shutdown.clone(),
    ));
    let mut client = serve(&h, &live, &shutdown).await?;

    let answers = [
        (Channel::WhatsApp, "de-laptops", "anna", Some("5")),
        (
            Channel::WhatsApp,
            "de-laptops",
            "anna",
            Some("2 zu langsam"),
        ),
        (Channel::Telegram, "de-phones", "ben", Some("vier")),
        (Channel::Telegram, "de-phones", "ben", None),
    ];
    for (channel, queue, agent, answer) in answers {
        let ticket = h.awaiting_rating(channel, queue, agent).await?;
        if let Some(answer) = answer {
            h.say(ticket, answer).await?;
            h.events_once(ticket, |events| {
                events
                    .iter()
                    .any(|e| matches!(e, Event::TicketClosed { .. }))
            })
            .await?;
        }
    }
    let last = h
        .store
        .jetstream()
        .get_stream(h.store.layout().event_stream())
        .await?
        .cached_info()
        .state
        .last_sequence;
    eventually("the projection reads the whole log", || {
        live.is_replayed() && live.last_sequence() == last
    })
    .await?;

    let by_agent = client
        .get_csat(request(
            pb::CsatFilter::default(),
            &[pb::CsatGrouping::Agent],
        ))
        .await?
        .into_inner();
    let rows: Vec<_> = by_agent.rows.iter().map(figures).collect();
    assert_eq!(
        rows,
        [
            ("anna".to_owned(), 2, 3.5, 50.0, 2, 100.0),
            ("ben".to_owned(), 1, 4.0, 100.0, 2, 50.0),
        ]
    );
    assert_eq!(
        by_agent.position,
        Some(pb::CsatPosition {
            applied_sequence: last,
            stream_last_sequence: last,
            replayed: true,
        })
    );

    let telegram_by_queue = client
        .get_csat(request(
            pb::CsatFilter {
                channel: pb::Channel::Telegram.into(),
                ..Default::default()
            },
            &[pb::CsatGrouping::Region, pb::CsatGrouping::Queue],
        ))
        .await?
        .into_inner();
    let rows: Vec<_> = telegram_by_queue.rows.iter().map(figures).collect();
    assert_eq!(rows, [("de de-phones".to_owned(), 1, 4.0, 100.0, 2, 50.0)]);

    let by_day = client
        .get_csat(request(pb::CsatFilter::default(), &[pb::CsatGrouping::Day]))
        .await?
        .into_inner();
    // A run across midnight splits the ratings over two days; each row names its day.
    for row in &by_day.rows {
        row.group[0].parse::<jiff::civil::Date>()?;
    }
    assert_eq!(by_day.rows.iter().map(|row| row.ratings).sum::<u32>(), 3);

    let before_everything = client
        .get_csat(request(
            pb::CsatFilter {
                to: Some(prost_types::Timestamp {
                    seconds: 1_000_000_000,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &[],
        ))
        .await?
        .into_inner();
    assert_eq!(before_everything.rows, []);

    let rebuilt = Csat::default();
    let rebuilding = {
        let (rebuilt, store, shutdown) = (rebuilt.clone(), h.store.clone(), shutdown.clone());
        tokio::spawn(async move { rebuilt.follow(&store, shutdown).await })
    };
    eventually("the rebuilt projection reads the whole log", || {
        rebuilt.is_replayed() && rebuilt.last_sequence() == last
    })
    .await?;
    assert_eq!(rebuilt.snapshot(), live.snapshot());

    shutdown.cancel();
    feedback.await??;
    following.await?;
    rebuilding.await?;
    Ok(())
}

#[tokio::test]
async fn bad_groupings_and_channels_are_invalid_arguments() -> TestResult {
    let h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let csat = Csat::default();
    let mut client = serve(&h, &csat, &shutdown).await?;

    let unspecified = client
        .get_csat(pb::GetCsatRequest {
            filter: None,
            group_by: vec![0],
        })
        .await
        .err()
        .ok_or("grouping 0 was accepted")?;
    assert_eq!(unspecified.code(), Code::InvalidArgument);
    assert!(
        unspecified.message().contains("group_by"),
        "{unspecified:?}"
    );

    let channel = client
        .get_csat(request(
            pb::CsatFilter {
                channel: 42,
                ..Default::default()
            },
            &[],
        ))
        .await
        .err()
        .ok_or("channel 42 was accepted")?;
    assert_eq!(channel.code(), Code::InvalidArgument);
    assert!(channel.message().contains("filter.channel"), "{channel:?}");
    shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn csat_is_for_supervisors_only() -> TestResult {
    let h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let csat = Csat::default();
    let address = listen(&h, &csat, &shutdown)?;
    let channel = GrpcChannel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;

    let mut anonymous = FeedbackClient::new(channel.clone());
    let refused = anonymous.get_csat(request(Default::default(), &[])).await;
    assert_eq!(
        refused.err().ok_or("answered")?.code(),
        Code::Unauthenticated
    );

    let mut agent =
        FeedbackClient::with_interceptor(channel.clone(), Bearer::new("anna", Role::Agent)?);
    let refused = agent.get_csat(request(Default::default(), &[])).await;
    assert_eq!(
        refused.err().ok_or("answered")?.code(),
        Code::PermissionDenied
    );

    let mut admin =
        FeedbackClient::with_interceptor(channel, Bearer::new("ops-admin", Role::Admin)?);
    admin.get_csat(request(Default::default(), &[])).await?;
    shutdown.cancel();
    Ok(())
}
