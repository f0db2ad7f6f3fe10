//! Tokens with an end, against `helpline all`: the services hold only the region's
//! public key; a token that is expired, issued ahead, of another issuer, too long-lived,
//! signed otherwise or revoked is refused, and an open stream ends when its token expires
//! or is revoked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use process::{KillOnDrop, Ports, Quiet, helpline};

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use helpline_assignment::auth::{self, AuthKey, TokenPolicy};
use helpline_proto::v1 as pb;
use helpline_region::Role;
use helpline_testkit::NatsServer;
use helpline_testkit::bearer::Bearer;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// `helpline all` verifying with `verify_key` alone; its gRPC channel once it answers.
async fn start(nats: &NatsServer, verify_key: &str) -> (Quiet, Channel) {
    let (mut command, Ports { grpc, .. }) = helpline("all", &nats.url());
    let child = KillOnDrop::quiet(command.env("HELPLINE_AUTH__VERIFY_KEY", verify_key));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{grpc}"))
            .unwrap()
            .connect()
            .await
        {
            return (child, channel);
        }
        assert!(Instant::now() < deadline, "the gRPC port never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Query = pb::ticket_query_client::TicketQueryClient<InterceptedService<Channel, Bearer>>;

fn query(channel: &Channel, token: &str) -> Query {
    pb::ticket_query_client::TicketQueryClient::with_interceptor(
        channel.clone(),
        Bearer::with_token(token).unwrap(),
    )
}

/// Whether a query with `token` is answered (TicketQuery needs a supervisor).
async fn answered(channel: &Channel, token: &str) -> Result<(), Code> {
    query(channel, token)
        .list_tickets(pb::ListTicketsRequest::default())
        .await
        .map(|_| ())
        .map_err(|status| status.code())
}

fn token(key: &AuthKey, agent: &str, role: Role, ttl: Duration, at: SystemTime) -> String {
    auth::issue(key, agent, role, ttl, at).unwrap()
}

/// Waits (boundedly) for a watch to end, and says how.
async fn end_of_watch(channel: &Channel, token: &str, within: Duration) -> Option<Code> {
    let mut watch = query(channel, token)
        .watch_queue(pb::WatchQueueRequest {
            queue: "de-laptops".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let ended = tokio::time::timeout(within, async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status.code()),
                None => return None,
            }
        }
    })
    .await;
    ended.expect("the watch outlived its token")
}

#[tokio::test]
async fn services_verify_with_the_public_key_alone_and_refuse_every_token_without_an_end() {
    let nats = NatsServer::start().await.unwrap();
    let (public, seed) = AuthKey::generate_ed25519().unwrap();
    // The test is the signer; the services get the public key only.
    let signer = AuthKey::ed25519(&public, Some(&seed)).unwrap();
    let (_helpline, channel) = start(&nats, &public).await;
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);

    let good = token(&signer, "sabine", Role::Supervisor, hour, now);
    assert_eq!(answered(&channel, &good).await, Ok(()));

    let expired = token(
        &signer,
        "sabine",
        Role::Supervisor,
        Duration::from_secs(60),
        now - 2 * hour,
    );
    let ahead = token(&signer, "sabine", Role::Supervisor, hour, now + hour);
    let other_issuer = token(
        &signer.with_policy(TokenPolicy {
            issuer: "someone-else".to_owned(),
            ..TokenPolicy::default()
        }),
        "sabine",
        Role::Supervisor,
        hour,
        now,
    );
    let century = token(
        &signer.with_policy(TokenPolicy {
            max_lifetime: 100 * 365 * 24 * hour,
            ..TokenPolicy::default()
        }),
        "sabine",
        Role::Supervisor,
        100 * 365 * 24 * hour,
        now,
    );
    // The old shared-secret kind, with the development key anyone can read.
    let shared = token(
        &AuthKey::development(),
        "sabine",
        Role::Supervisor,
        hour,
        now,
    );
    // A pair of its own: its public key is not the region's.
    let (stranger_public, stranger_seed) = AuthKey::generate_ed25519().unwrap();
    let stranger = token(
        &AuthKey::ed25519(&stranger_public, Some(&stranger_seed)).unwrap(),
        "sabine",
        Role::Supervisor,
        hour,
        now,
    );
    for (what, token) in [
        ("expired", expired),
        ("issued ahead", ahead),
        ("another issuer", other_issuer),
        ("a hundred years", century),
        ("a shared secret", shared),
        ("another key pair", stranger),
    ] {
        assert_eq!(
            answered(&channel, &token).await,
            Err(Code::Unauthenticated),
            "{what}"
        );
    }

    // A watch ends with its token.
    let short = token(
        &signer,
        "sabine",
        Role::Supervisor,
        Duration::from_secs(2),
        SystemTime::now(),
    );
    assert_eq!(
        end_of_watch(&channel, &short, Duration::from_secs(20)).await,
        Some(Code::Unauthenticated)
    );
}

#[tokio::test]
async fn a_revoked_agents_tokens_and_open_streams_end_within_seconds_in_every_process() {
    let nats = NatsServer::start().await.unwrap();
    let (public, seed) = AuthKey::generate_ed25519().unwrap();
    let signer = AuthKey::ed25519(&public, Some(&seed)).unwrap();
    // Two processes: the revocation is made in one and reaches the other through the
    // region's revocations bucket.
    let (_one, revoking) = start(&nats, &public).await;
    let (_other, watching_on) = start(&nats, &public).await;
    let hour = Duration::from_secs(3600);
    let sabine = token(&signer, "sabine", Role::Supervisor, hour, SystemTime::now());
    let admin = token(&signer, "ops-admin", Role::Admin, hour, SystemTime::now());
    assert_eq!(answered(&watching_on, &sabine).await, Ok(()));

    // Sabine watches her queue on the other process while an admin revokes her tokens.
    let watching = {
        let (channel, sabine) = (watching_on.clone(), sabine.clone());
        tokio::spawn(async move { end_of_watch(&channel, &sabine, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // An agent may not revoke.
    let anna = token(&signer, "anna", Role::Agent, hour, SystemTime::now());
    let mut desk = pb::agent_desk_client::AgentDeskClient::with_interceptor(
        revoking.clone(),
        Bearer::with_token(&anna).unwrap(),
    );
    let refused = desk
        .revoke_tokens(pb::RevokeTokensRequest {
            agent_id: "sabine".to_owned(),
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
    let mut desk = pb::agent_desk_client::AgentDeskClient::with_interceptor(
        revoking.clone(),
        Bearer::with_token(&admin).unwrap(),
    );
    desk.revoke_tokens(pb::RevokeTokensRequest {
        agent_id: "sabine".to_owned(),
    })
    .await
    .unwrap();

    assert_eq!(watching.await.unwrap(), Some(Code::Unauthenticated));
    for channel in [&revoking, &watching_on] {
        assert_eq!(answered(channel, &sabine).await, Err(Code::Unauthenticated));
    }
    // Signed in again afterwards: a new token works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = token(&signer, "sabine", Role::Supervisor, hour, SystemTime::now());
    assert_eq!(answered(&watching_on, &again).await, Ok(()));
}

#[test]
fn a_process_with_the_public_key_alone_cannot_issue_tokens() {
    let (public, _) = AuthKey::generate_ed25519().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["agent-token", "--agent", "anna"])
        .env("HELPLINE_AUTH__VERIFY_KEY", public)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("only verifies"), "{said}");
}
