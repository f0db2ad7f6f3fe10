//! The `helpline.v1.Routing` API: the region's rules, and a dry run of a route.
//! Read-only: nothing here appends to the log. Every call takes a bearer token of an
//! agent of the region: the rules any agent, a dry run a supervisor or admin.

use std::sync::Arc;

use helpline_auth::AuthKey;
use helpline_domain::{Ticket, TicketId};
use helpline_eventstore::EventStore;
use helpline_eventstore::codec::channel_from_proto_value;
use helpline_proto::v1 as pb;
use helpline_proto::v1::routing_server::{Routing, RoutingServer};
use helpline_region::{RegionConfig, Role, RouteFacts, Store};
use tonic::{Request, Response, Status};

use crate::decision::{Destination, Facts, decide_route};
use crate::error::RoutingError;

/// The Routing API over `store` and `region`; the binary serves it beside the other
/// services, health and reflection.
pub fn grpc_service(
    store: EventStore,
    region: Arc<RegionConfig>,
    key: AuthKey,
) -> RoutingServer<impl Routing> {
    RoutingServer::new(RoutingApi { store, region, key })
}

#[derive(Debug)]
struct RoutingApi {
    store: EventStore,
    region: Arc<RegionConfig>,
    /// What bearer tokens are checked with.
    key: AuthKey,
}

impl RoutingApi {
    /// The caller's role, from their bearer token; at least `least`.
    fn authorize<T>(&self, request: &Request<T>, least: Role) -> Result<Role, RoutingError> {
        let (agent, role) = helpline_auth::caller(&self.key, request, &self.region)
            .map_err(|e| RoutingError::Unauthenticated(e.to_string()))?;
        if role < least {
            return Err(RoutingError::PermissionDenied(format!(
                "{} is {}; this takes a {}",
                agent.id,
                role.as_str(),
                least.as_str()
            )));
        }
        Ok(role)
    }
}

#[tonic::async_trait]
impl Routing for RoutingApi {
    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        // The rules are the region's configuration, nothing personal: any agent.
        self.authorize(&request, Role::Agent)?;
        let at = moment(request.into_inner().at)?;
        let region = &*self.region;
        let zone = region.locale.zone();
        let rules = region
            .routing
            .rules
            .iter()
            .map(|rule| pb::RoutingRule {
                name: rule.name.clone(),
                countries: rule.countries.clone(),
                languages: rule.languages.clone(),
                products: rule.products.clone(),
                product_kinds: rule.product_kinds.clone(),
                categories: rule.categories.clone(),
                channels: rule.channels.clone(),
                intents: rule.intents.clone(),
                groups: rule.groups.clone(),
                hours: rule.hours.to_string(),
                target: Some(match &rule.queue {
                    Some(queue) if !rule.refer_to_store => {
                        pb::routing_rule::Target::Queue(queue.to_string())
                    }
                    _ => pb::routing_rule::Target::ReferToStore(rule.refer_to_store),
                }),
            })
            .collect();
        let queues = region
            .queues
            .iter()
            .map(|queue| pb::RoutingQueue {
                id: queue.id.to_string(),
                name: queue.name.clone(),
                languages: queue.languages.clone(),
                hours: queue.hours.to_string(),
                expected_wait_mins: queue.expected_wait_mins,
                priority: queue.priority,
                staffed: queue.hours.is_open(at, &zone),
            })
            .collect();
        Ok(Response::new(pb::ListRulesResponse {
            country: region.locale.country.clone(),
            time_zone: region.locale.time_zone.clone(),
            rules,
            default_queue: region.routing.default_queue.to_string(),
            queues,
            stores: region.stores.iter().map(store_to_proto).collect(),
        }))
    }

    async fn dry_run(
        &self,
        request: Request<pb::DryRunRequest>,
    ) -> Result<Response<pb::DryRunResponse>, Status> {
        // A ticket's facts hold the customer's location: only those who may see a
        // ticket's personal data (supervisors and admins, as in TicketQuery).
        self.authorize(&request, Role::Supervisor)?;
        let request = request.into_inner();
        let at = moment(request.at)?;
        let facts = match request.subject {
            Some(pb::dry_run_request::Subject::TicketId(id)) => Facts::of(&self.ticket(&id).await?),
            Some(pb::dry_run_request::Subject::Facts(facts)) => facts_from_proto(facts)?,
            None => {
                return Err(RoutingError::InvalidArgument {
                    field: "subject",
                    reason: "give a ticket_id or facts".to_owned(),
                }
                .into());
            }
        };
        let region = &*self.region;
        let decision = decide_route(region, &facts, at);
        let (target, queue_staffed) = match &decision.destination {
            Destination::Queue(queue) => {
                let staffed = region
                    .queue(queue)
                    .is_some_and(|q| q.hours.is_open(at, &region.locale.zone()));
                (
                    pb::dry_run_response::Target::Queue(queue.to_string()),
                    staffed,
                )
            }
            Destination::Store(referral) => {
                let store = region.store(&referral.store).map_or_else(
                    || pb::RoutingStore {
                        id: referral.store.to_string(),
                        name: referral.name.clone(),
                        address: referral.address.clone(),
                        opening_hours: referral.opening_hours.clone(),
                        ..pb::RoutingStore::default()
                    },
                    store_to_proto,
                );
                (pb::dry_run_response::Target::Store(store), false)
            }
        };
        Ok(Response::new(pb::DryRunResponse {
            rule: decision.rule.clone(),
            target: Some(target),
            facts: Some(facts_to_proto(&facts)),
            fallback_reason: decision
                .fallback
                .map(|why| why.to_string())
                .unwrap_or_default(),
            queue_staffed,
        }))
    }
}

impl RoutingApi {
    async fn ticket(&self, id: &str) -> Result<Ticket, RoutingError> {
        let id =
            id.parse::<uuid::Uuid>()
                .map(TicketId)
                .map_err(|e| RoutingError::InvalidArgument {
                    field: "ticket_id",
                    reason: format!("not a UUID: {e}"),
                })?;
        let loaded = self.store.load(id).await?;
        if loaded.ticket.id.is_none() {
            return Err(RoutingError::TicketNotFound(id));
        }
        Ok(loaded.ticket)
    }
}

/// `at`, or now when the request leaves it out.
fn moment(at: Option<prost_types::Timestamp>) -> Result<jiff::Timestamp, RoutingError> {
    let Some(at) = at else {
        return Ok(jiff::Timestamp::now());
    };
    let invalid = |reason: String| RoutingError::InvalidArgument {
        field: "at",
        reason,
    };
    jiff::Timestamp::new(at.seconds, at.nanos).map_err(|e| invalid(e.to_string()))
}

fn store_to_proto(store: &Store) -> pb::RoutingStore {
    pb::RoutingStore {
        id: store.id.to_string(),
        name: store.name.clone(),
        address: store.address.clone(),
        opening_hours: store.opening_hours.clone(),
        latitude: store.latitude,
        longitude: store.longitude,
    }
}

fn facts_from_proto(facts: pb::RoutingFacts) -> Result<Facts, RoutingError> {
    let channel = channel_from_proto_value(facts.channel).map_err(|reason| {
        RoutingError::InvalidArgument {
            field: "facts.channel",
            reason,
        }
    })?;
    Ok(Facts {
        route: RouteFacts {
            language: facts.language,
            product: facts.product,
            category: facts.category,
            channel,
            intent: facts.intent,
            group: facts.group,
        },
        location: facts.location,
    })
}

fn facts_to_proto(facts: &Facts) -> pb::RoutingFacts {
    let channel = facts.route.channel.map_or(
        pb::Channel::Unspecified,
        helpline_eventstore::codec::channel_to_proto,
    );
    pb::RoutingFacts {
        language: facts.route.language.clone(),
        product: facts.route.product.clone(),
        category: facts.route.category.clone(),
        channel: channel.into(),
        location: facts.location.clone(),
        intent: facts.route.intent.clone(),
        group: facts.route.group.clone(),
    }
}
