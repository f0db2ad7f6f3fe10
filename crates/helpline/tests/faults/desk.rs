//! The agents, played through the AgentDesk API as people at their desks would through a
//! client: each signs in, watches, accepts what is offered, writes to the customer once and
//! resolves the ticket. A stream that ends (the assignment process killed) is opened again
//! and the agent signs in again; a call that fails is made again, a reply with the same
//! request id, so a retry after a lost answer never writes to the customer twice.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use helpline_proto::v1 as pb;
use helpline_proto::v1::agent_desk_client::AgentDeskClient;
use helpline_testkit::bearer::Bearer;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

/// How long one step of a ticket (accept, reply, resolve) is tried before the agent
/// leaves the ticket (it is offered again to someone) and says so.
const STEP_DEADLINE: Duration = Duration::from_secs(60);
const PAUSE: Duration = Duration::from_millis(200);

type Client = AgentDeskClient<InterceptedService<Channel, Bearer>>;

/// What the agents did, for the report and the verdict.
#[derive(Debug, Default)]
pub struct DeskStats {
    /// Replies that reached the API and were answered.
    pub replies: AtomicUsize,
    pub resolved: AtomicUsize,
    /// Watch streams opened after the first, per agent: the assignment process went away.
    pub reconnects: AtomicUsize,
    /// Calls made again after a failure.
    pub retries: AtomicUsize,
    /// Tickets an agent had to leave, and why.
    pub left: Mutex<Vec<String>>,
    working: Mutex<HashSet<String>>,
    done: Mutex<HashSet<String>>,
}

/// Starts one task per agent against the AgentDesk API at `url`, each with its token,
/// until `stop`.
pub fn start(url: &str, agents: Vec<(String, String)>, stop: CancellationToken) -> Arc<DeskStats> {
    let stats = Arc::new(DeskStats::default());
    for (agent, token) in agents {
        tokio::spawn(at_desk(
            url.to_owned(),
            agent,
            token,
            stats.clone(),
            stop.clone(),
        ));
    }
    stats
}

async fn at_desk(
    url: String,
    agent: String,
    token: String,
    stats: Arc<DeskStats>,
    stop: CancellationToken,
) {
    let mut streams = 0;
    while !stop.is_cancelled() {
        let Some(mut client) = connect(&url, &token).await else {
            tokio::time::sleep(PAUSE).await;
            continue;
        };
        if client.sign_in(pb::SignInRequest {}).await.is_err() {
            tokio::time::sleep(PAUSE).await;
            continue;
        }
        let Ok(watch) = client.watch(pb::WatchRequest {}).await else {
            tokio::time::sleep(PAUSE).await;
            continue;
        };
        streams += 1;
        if streams > 1 {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let mut watch = watch.into_inner();
        loop {
            let update = tokio::select! {
                _ = stop.cancelled() => return,
                update = watch.message() => update,
            };
            let Ok(Some(update)) = update else { break };
            if let Some(pb::watch_response::Update::Ticket(ticket)) = update.update {
                let id = ticket.ticket_id.clone();
                let new = !lock(&stats.done).contains(&id) && lock(&stats.working).insert(id);
                if new {
                    tokio::spawn(work(client.clone(), agent.clone(), ticket, stats.clone()));
                }
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
}

async fn connect(url: &str, token: &str) -> Option<Client> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .ok()?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .ok()?;
    Some(AgentDeskClient::with_interceptor(
        channel,
        Bearer::with_token(token).ok()?,
    ))
}

/// One ticket, start to end: accept (unless it is already accepted), one reply, resolve.
async fn work(client: Client, agent: String, ticket: pb::AgentTicket, stats: Arc<DeskStats>) {
    let id = ticket.ticket_id.clone();
    let outcome = async {
        if !ticket.accepted {
            step(&stats, "accept", || {
                let mut client = client.clone();
                let request = pb::AcceptRequest {
                    ticket_id: id.clone(),
                };
                async move { client.accept(request).await.map(|_| ()) }
            })
            .await?;
        }
        // One id for this reply, whichever try stores it.
        let request_id = Uuid::now_v7().to_string();
        // Half the replies start from a canned reply (edited: the text is the agent's),
        // so its record (CannedReplyUsed) goes through every fault too.
        let canned_reply = match id.ends_with(['0', '2', '4', '6', '8', 'a', 'c', 'e']) {
            true => "kva".to_owned(),
            false => String::new(),
        };
        step(&stats, "reply", || {
            let mut client = client.clone();
            let request = pb::ReplyRequest {
                ticket_id: id.clone(),
                body: Some(pb::MessageBody {
                    content: Some(pb::message_body::Content::Text(
                        "Ich habe Ihr Konto entsperrt, bitte melden Sie sich neu an.".to_owned(),
                    )),
                }),
                request_id: request_id.clone(),
                canned_reply: canned_reply.clone(),
            };
            async move { client.reply(request).await.map(|_| ()) }
        })
        .await?;
        stats.replies.fetch_add(1, Ordering::Relaxed);
        step(&stats, "resolve", || {
            let mut client = client.clone();
            let request = pb::ResolveRequest {
                ticket_id: id.clone(),
                summary: "account unlocked".to_owned(),
            };
            async move { client.resolve(request).await.map(|_| ()) }
        })
        .await
    }
    .await;
    lock(&stats.working).remove(&id);
    match outcome {
        Ok(()) => {
            stats.resolved.fetch_add(1, Ordering::Relaxed);
            lock(&stats.done).insert(id);
        }
        Err(why) => lock(&stats.left).push(format!("{agent} left ticket {id}: {why}")),
    }
}

/// Makes one call until it is answered: again after a failure that says nothing about
/// the call (the process gone, a timeout, unavailable), and also after "failed
/// precondition" once it was made before (the earlier try did take effect: an accept or
/// a resolve that landed while its answer was lost).
async fn step<F, Fut>(stats: &DeskStats, what: &str, call: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + STEP_DEADLINE;
    let mut tried = false;
    loop {
        match call().await {
            Ok(()) => return Ok(()),
            Err(status) if status.code() == Code::FailedPrecondition && tried => return Ok(()),
            Err(status)
                if matches!(
                    status.code(),
                    Code::PermissionDenied | Code::NotFound | Code::InvalidArgument
                ) || (status.code() == Code::FailedPrecondition && !tried) =>
            {
                return Err(format!("{what}: {status}"));
            }
            Err(status) if tokio::time::Instant::now() > deadline => {
                return Err(format!(
                    "{what}: still failing after {STEP_DEADLINE:?}: {status}"
                ));
            }
            Err(_) => {
                tried = true;
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(PAUSE).await;
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every agent (not supervisors or admins) of the region file, with a token of the
/// development key (the services run without a configuration file).
pub fn region_agents(region_file: &str) -> Vec<(String, String)> {
    let region = helpline_region::RegionConfig::from_region_file(region_file)
        .unwrap_or_else(|e| panic!("region file: {e}"));
    region
        .agents
        .iter()
        .filter(|agent| agent.role == helpline_region::Role::Agent)
        .map(|agent| {
            let token = helpline_testkit::bearer::token(
                &helpline_assignment::AuthKey::development(),
                agent.id.as_str(),
                helpline_region::Role::Agent,
            )
            .unwrap_or_else(|e| panic!("token for {}: {e}", agent.id.as_str()));
            (agent.id.as_str().to_owned(), token)
        })
        .collect()
}
