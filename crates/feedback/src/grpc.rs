//! The `helpline.v1.Feedback` API: CSAT figures from the live projection, for
//! supervisors and admins (bearer token): ratings per agent are a supervisor's report.

use std::sync::Arc;

use helpline_auth::AuthKey;
use helpline_domain::{AgentId, QueueId};
use helpline_eventstore::EventStore;
use helpline_eventstore::codec::channel_from_proto_value;
use helpline_proto::v1 as pb;
use helpline_proto::v1::feedback_server::{Feedback, FeedbackServer};
use helpline_region::{RegionConfig, Role};
use jiff::tz::TimeZone;
use tonic::{Request, Response, Status};

use crate::csat::{CsatFilter, CsatRow, Grouping};
use crate::error::FeedbackError;
use crate::projection::Csat;

/// The Feedback API over `csat` (kept live by [`Csat::follow`]); periods are days, weeks
/// and months in the region's time zone; callers are the region's agents, their tokens
/// checked with `key`. The binary serves it beside the other services, health and
/// reflection.
pub fn grpc_service(
    store: EventStore,
    csat: Csat,
    region: Arc<RegionConfig>,
    key: AuthKey,
) -> FeedbackServer<impl Feedback> {
    let zone = region.locale.zone();
    FeedbackServer::new(FeedbackApi {
        store,
        csat,
        zone,
        region,
        key,
    })
}

#[derive(Debug)]
pub(crate) struct FeedbackApi {
    pub(crate) store: EventStore,
    pub(crate) csat: Csat,
    pub(crate) zone: TimeZone,
    pub(crate) region: Arc<RegionConfig>,
    pub(crate) key: AuthKey,
}

#[tonic::async_trait]
impl Feedback for FeedbackApi {
    async fn get_csat(
        &self,
        request: Request<pb::GetCsatRequest>,
    ) -> Result<Response<pb::GetCsatResponse>, Status> {
        self.csat_report(request).await
    }
}

impl FeedbackApi {
    /// `GetCsat`, of the Feedback and the Reports API alike.
    pub(crate) async fn csat_report(
        &self,
        request: Request<pb::GetCsatRequest>,
    ) -> Result<Response<pb::GetCsatResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let (filter, group_by) = report_request(request.filter, request.group_by)?;
        let stream_last_sequence = self
            .store
            .log_last_sequence()
            .await
            .map_err(FeedbackError::from)?;
        // Read after the stream's position, so the answer never shows the projection
        // ahead of the log.
        let (rows, applied_sequence) = self.csat.read_with(|projection| {
            (
                projection.report(&filter, &group_by, &self.zone),
                projection.last_sequence(),
            )
        });
        Ok(Response::new(pb::GetCsatResponse {
            rows: rows.iter().map(row_to_proto).collect(),
            position: Some(pb::CsatPosition {
                applied_sequence,
                stream_last_sequence: stream_last_sequence.max(applied_sequence),
                replayed: self.csat.is_replayed(),
            }),
        }))
    }

    /// Only supervisors and admins read reports: they rate agents by name.
    pub(crate) fn authorize<T>(&self, request: &Request<T>) -> Result<(), FeedbackError> {
        self.authorize_claims(request).map(|_| ())
    }

    /// As [`FeedbackApi::authorize`], with the token's claims: a stream ends with them.
    pub(crate) fn authorize_claims<T>(
        &self,
        request: &Request<T>,
    ) -> Result<helpline_auth::Claims, FeedbackError> {
        let (agent, role, claims) = helpline_auth::caller_claims(&self.key, request, &self.region)
            .map_err(|e| FeedbackError::Unauthenticated(e.to_string()))?;
        if role < Role::Supervisor {
            return Err(FeedbackError::PermissionDenied(format!(
                "{} is {}; reports are for supervisors",
                agent.id,
                role.as_str()
            )));
        }
        Ok(claims)
    }
}

/// A report request's filter and groups, as CSAT and service levels both take them.
pub(crate) fn report_request(
    filter: Option<pb::CsatFilter>,
    group_by: Vec<i32>,
) -> Result<(CsatFilter, Vec<Grouping>), FeedbackError> {
    let filter = filter_from_proto(filter.unwrap_or_default())?;
    let group_by = group_by
        .into_iter()
        .map(grouping_from_proto)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((filter, group_by))
}

fn filter_from_proto(filter: pb::CsatFilter) -> Result<CsatFilter, FeedbackError> {
    let text = |value: String| (!value.is_empty()).then_some(value);
    let channel = channel_from_proto_value(filter.channel).map_err(|reason| {
        FeedbackError::InvalidArgument {
            field: "filter.channel",
            reason,
        }
    })?;
    Ok(CsatFilter {
        queue: text(filter.queue).map(QueueId::new),
        agent: text(filter.agent).map(AgentId::new),
        channel,
        from: filter
            .from
            .map(|at| moment(at, "filter.from"))
            .transpose()?,
        to: filter.to.map(|at| moment(at, "filter.to")).transpose()?,
    })
}

fn moment(
    at: prost_types::Timestamp,
    field: &'static str,
) -> Result<jiff::Timestamp, FeedbackError> {
    jiff::Timestamp::new(at.seconds, at.nanos).map_err(|e| FeedbackError::InvalidArgument {
        field,
        reason: e.to_string(),
    })
}

fn grouping_from_proto(value: i32) -> Result<Grouping, FeedbackError> {
    match pb::CsatGrouping::try_from(value) {
        Ok(pb::CsatGrouping::Region) => Ok(Grouping::Region),
        Ok(pb::CsatGrouping::Queue) => Ok(Grouping::Queue),
        Ok(pb::CsatGrouping::Agent) => Ok(Grouping::Agent),
        Ok(pb::CsatGrouping::Channel) => Ok(Grouping::Channel),
        Ok(pb::CsatGrouping::Day) => Ok(Grouping::Day),
        Ok(pb::CsatGrouping::Week) => Ok(Grouping::Week),
        Ok(pb::CsatGrouping::Month) => Ok(Grouping::Month),
        Ok(pb::CsatGrouping::Unspecified) | Err(_) => Err(FeedbackError::InvalidArgument {
            field: "group_by",
            reason: format!("{value} is no grouping"),
        }),
    }
}

fn row_to_proto(row: &CsatRow) -> pb::CsatRow {
    pb::CsatRow {
        group: row.group.clone(),
        ratings: row.ratings,
        average: row.average(),
        csat_percent: row.csat_percent(),
        ratings_requested: row.ratings_requested,
        response_rate_percent: row.response_rate_percent(),
    }
}
