//! The Routing API through a real tonic client on a random port.

mod support;

use std::sync::Arc;

use helpline_domain::Phase;
use helpline_proto::v1 as pb;
use helpline_proto::v1::routing_client::RoutingClient;
use helpline_region::Role;
use helpline_testkit::bearer::{Bearer, test_key};
use support::{Harness, TestResult, germany, wednesday_noon};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Server, server::TcpIncoming};

type Client = RoutingClient<InterceptedService<Channel, Bearer>>;

/// Serves the API on 127.0.0.1:0 until `shutdown` fires, and connects a client to it
/// that calls as the region's admin.
async fn serve(
    h: &Harness,
    shutdown: &CancellationToken,
) -> Result<Client, Box<dyn std::error::Error>> {
    serve_as(h, shutdown, Bearer::new("ops-admin", Role::Admin)?).await
}

/// As [`serve`], the client calling with `bearer`'s token.
async fn serve_as(
    h: &Harness,
    shutdown: &CancellationToken,
    bearer: Bearer,
) -> Result<Client, Box<dyn std::error::Error>> {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse()?)?;
    let address = incoming.local_addr()?;
    let service = helpline_routing::grpc_service(h.store.clone(), Arc::new(germany()), test_key());
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()),
    );
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    Ok(RoutingClient::with_interceptor(channel, bearer))
}

fn by_ticket(id: &str) -> pb::DryRunRequest {
    pb::DryRunRequest {
        subject: Some(pb::dry_run_request::Subject::TicketId(id.to_owned())),
        at: Some(wednesday_noon()),
    }
}

fn by_facts(facts: pb::RoutingFacts) -> pb::DryRunRequest {
    pb::DryRunRequest {
        subject: Some(pb::dry_run_request::Subject::Facts(facts)),
        at: Some(wednesday_noon()),
    }
}

#[tokio::test]
async fn a_dry_run_by_ticket_shows_the_store_and_the_facts_and_appends_nothing() -> TestResult {
    let h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let mut client = serve(&h, &shutdown).await?;
    let ticket = h
        .handed_over("de", "MateBook X Pro", "hardware", "10115 Berlin")
        .await?;
    let before = h.store.load(ticket).await?;

    let answer = client
        .dry_run(by_ticket(&ticket.to_string()))
        .await?
        .into_inner();

    assert_eq!(answer.rule, "laptop-hardware-to-store");
    let Some(pb::dry_run_response::Target::Store(store)) = answer.target else {
        panic!("not a store: {answer:?}");
    };
    assert_eq!(store.id, "berlin-mitte");
    assert_eq!(store.name, "Service Store Berlin Mitte");
    assert_eq!(store.address, "Friedrichstraße 100, 10117 Berlin");
    assert_eq!(store.opening_hours, "Mo–Fr 10:00–19:00, Sa 10:00–16:00");
    assert_eq!(
        answer.facts,
        Some(pb::RoutingFacts {
            language: "de".to_owned(),
            product: "MateBook X Pro".to_owned(),
            category: "hardware".to_owned(),
            channel: pb::Channel::Whatsapp.into(),
            location: "10115 Berlin".to_owned(),
            ..Default::default()
        })
    );
    assert_eq!(answer.fallback_reason, "");
    let after = h.store.load(ticket).await?;
    assert_eq!(after.version, before.version);
    assert_eq!(after.ticket.phase, Phase::Routing);
    shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn a_dry_run_by_facts_names_the_queue_and_whether_it_is_staffed() -> TestResult {
    let h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let mut client = serve(&h, &shutdown).await?;
    let english = pb::RoutingFacts {
        language: "en".to_owned(),
        product: "MateBook".to_owned(),
        channel: pb::Channel::Telegram.into(),
        ..Default::default()
    };

    let at_noon = client
        .dry_run(by_facts(english.clone()))
        .await?
        .into_inner();
    assert_eq!(at_noon.rule, "english");
    assert_eq!(
        at_noon.target,
        Some(pb::dry_run_response::Target::Queue("de-english".to_owned()))
    );
    assert!(at_noon.queue_staffed);

    let sunday = pb::DryRunRequest {
        at: Some(prost_types::Timestamp {
            seconds: wednesday_noon().seconds + 4 * 86_400,
            nanos: 0,
        }),
        ..by_facts(english)
    };
    assert!(!client.dry_run(sunday).await?.into_inner().queue_staffed);

    let no_location = pb::RoutingFacts {
        language: "de".to_owned(),
        product: "MatePad".to_owned(),
        category: "hardware".to_owned(),
        ..Default::default()
    };
    let fallback = client.dry_run(by_facts(no_location)).await?.into_inner();
    assert_eq!(fallback.rule, "laptop-hardware-to-store/no-store-found");
    assert_eq!(
        fallback.target,
        Some(pb::dry_run_response::Target::Queue("de-general".to_owned()))
    );
    assert_eq!(
        fallback.fallback_reason,
        "the ticket has no postcode or city"
    );
    shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn list_rules_gives_the_rules_in_order_the_queues_and_the_stores() -> TestResult {
    let h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let mut client = serve(&h, &shutdown).await?;

    let answer = client
        .list_rules(pb::ListRulesRequest {
            at: Some(wednesday_noon()),
        })
        .await?
        .into_inner();

    assert_eq!(answer.country, "DE");
    assert_eq!(answer.time_zone, "Europe/Berlin");
    assert_eq!(answer.default_queue, "de-general");
    let rules: Vec<_> = answer.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        rules,
        [
            "laptop-hardware-to-store",
            "english",
            "laptops",
            "laptop-page-button",
            "phones-and-wearables"
        ]
    );
    assert_eq!(answer.rules[3].groups, ["laptops"]);
    assert_eq!(
        answer.rules[0].target,
        Some(pb::routing_rule::Target::ReferToStore(true))
    );
    assert_eq!(answer.rules[0].product_kinds, ["laptop", "tablet"]);
    assert_eq!(
        answer.rules[1].target,
        Some(pb::routing_rule::Target::Queue("de-english".to_owned()))
    );
    let laptops = answer
        .queues
        .iter()
        .find(|q| q.id == "de-laptops")
        .ok_or("no de-laptops")?;
    assert_eq!(laptops.hours, "mon-fri 08:00-20:00, sat 10:00-16:00");
    assert!(laptops.staffed);
    assert_eq!(answer.queues.len(), 4);
    assert_eq!(answer.stores.len(), 5);
    assert_eq!(answer.stores[0].id, "berlin-mitte");
    shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn bad_requests_unknown_tickets_and_an_unavailable_store_get_their_codes() -> TestResult {
    let mut h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let mut client = serve(&h, &shutdown).await?;

    let bad_id = client.dry_run(by_ticket("not-a-uuid")).await;
    let status = bad_id.err().ok_or("a bad id was accepted")?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("ticket_id"), "{status:?}");

    let unknown = client
        .dry_run(by_ticket(&uuid::Uuid::now_v7().to_string()))
        .await;
    assert_eq!(unknown.err().ok_or("found")?.code(), Code::NotFound);

    let empty = client
        .dry_run(pb::DryRunRequest::default())
        .await
        .err()
        .ok_or("an empty request was accepted")?;
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(empty.message().contains("subject"), "{empty:?}");

    let bad_channel = client
        .dry_run(by_facts(pb::RoutingFacts {
            channel: 99,
            ..Default::default()
        }))
        .await
        .err()
        .ok_or("channel 99 was accepted")?;
    assert_eq!(bad_channel.code(), Code::InvalidArgument);
    assert!(bad_channel.message().contains("facts.channel"));

    let ticket = h.handed_over("de", "MateBook", "", "").await?;
    h.server.stop().await?;
    let down = client
        .dry_run(by_ticket(&ticket.to_string()))
        .await
        .err()
        .ok_or("answered without a store")?;
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn only_the_regions_agents_call_and_only_supervisors_see_a_tickets_facts() -> TestResult {
    let h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let ticket = h
        .handed_over("de", "MateBook X Pro", "hardware", "10115 Berlin")
        .await?;

    // No token at all, a token of another key, a token of nobody in the region.
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse()?)?;
    let address = incoming.local_addr()?;
    tokio::spawn(
        Server::builder()
            .add_service(helpline_routing::grpc_service(
                h.store.clone(),
                Arc::new(germany()),
                test_key(),
            ))
            .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()),
    );
    let mut anonymous = RoutingClient::connect(format!("http://{address}")).await?;
    let refused = anonymous.dry_run(by_ticket(&ticket.to_string())).await;
    assert_eq!(
        refused.err().ok_or("answered")?.code(),
        Code::Unauthenticated
    );
    let refused = anonymous.list_rules(pb::ListRulesRequest::default()).await;
    assert_eq!(
        refused.err().ok_or("answered")?.code(),
        Code::Unauthenticated
    );
    let foreign = helpline_testkit::bearer::token(
        &helpline_auth::AuthKey::development(),
        "ops-admin",
        Role::Admin,
    )?;
    for bearer in [
        Bearer::with_token(&foreign)?,
        Bearer::new("mallory", Role::Admin)?,
    ] {
        let mut client = serve_as(&h, &shutdown, bearer).await?;
        let refused = client.dry_run(by_ticket(&ticket.to_string())).await;
        assert_eq!(
            refused.err().ok_or("answered")?.code(),
            Code::Unauthenticated
        );
    }

    // An agent reads the rules, but not a ticket's facts: they hold the location.
    let mut agent = serve_as(&h, &shutdown, Bearer::new("anna", Role::Agent)?).await?;
    agent.list_rules(pb::ListRulesRequest::default()).await?;
    let refused = agent.dry_run(by_ticket(&ticket.to_string())).await;
    assert_eq!(
        refused.err().ok_or("answered")?.code(),
        Code::PermissionDenied
    );
    // A token claiming more than the directory grants gets the directory's role.
    let mut claims_more = serve_as(&h, &shutdown, Bearer::new("anna", Role::Admin)?).await?;
    let refused = claims_more.dry_run(by_ticket(&ticket.to_string())).await;
    assert_eq!(
        refused.err().ok_or("answered")?.code(),
        Code::PermissionDenied
    );

    // The supervisor sees it.
    let mut supervisor = serve_as(&h, &shutdown, Bearer::new("sabine", Role::Supervisor)?).await?;
    let answer = supervisor
        .dry_run(by_ticket(&ticket.to_string()))
        .await?
        .into_inner();
    assert_eq!(
        answer.facts.ok_or("no facts")?.location,
        "10115 Berlin",
        "the supervisor sees the location"
    );
    shutdown.cancel();
    Ok(())
}
