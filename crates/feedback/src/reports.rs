//! The `helpline.v1.Reports` API: CSAT and service levels from the live projections, for
//! supervisors and admins (bearer token).

use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use futures::Stream;
use helpline_domain::QueueId;
use helpline_domain::sla::SlaLevel;
use helpline_eventstore::codec::sla_clock_to_proto;

use helpline_auth::AuthKey;
use helpline_eventstore::EventStore;
use helpline_proto::v1 as pb;
use helpline_proto::v1::reports_server::{Reports, ReportsServer};
use helpline_region::RegionConfig;
use tonic::{Request, Response, Status};

use crate::error::FeedbackError;
use crate::grpc::{FeedbackApi, report_request};
use crate::levels::{ClockFigures, LevelsRow};
use crate::projection::{Csat, Levels};
use crate::watch::{RecordedAlarm, recorded_alarms};

/// The Reports API over `csat` and `levels` (each kept live by its `follow`); callers
/// are the region's supervisors and admins, their tokens checked with `key`. A running
/// clock is judged at the moment of the call.
pub fn reports_service(
    store: EventStore,
    csat: Csat,
    levels: Levels,
    region: Arc<RegionConfig>,
    key: AuthKey,
) -> ReportsServer<impl Reports> {
    let zone = region.locale.zone();
    ReportsServer::new(ReportsApi {
        feedback: FeedbackApi {
            store,
            csat,
            zone,
            region,
            key,
        },
        levels,
    })
}

#[derive(Debug)]
struct ReportsApi {
    feedback: FeedbackApi,
    levels: Levels,
}

#[tonic::async_trait]
impl Reports for ReportsApi {
    async fn get_satisfaction(
        &self,
        request: Request<pb::GetSatisfactionRequest>,
    ) -> Result<Response<pb::GetSatisfactionResponse>, Status> {
        let (metadata, extensions, message) = request.into_parts();
        let request = Request::from_parts(
            metadata,
            extensions,
            pb::GetCsatRequest {
                filter: message.filter,
                group_by: message.group_by,
            },
        );
        let answer = self.feedback.csat_report(request).await?.into_inner();
        Ok(Response::new(pb::GetSatisfactionResponse {
            rows: answer.rows,
            position: answer.position,
        }))
    }

    type WatchServiceLevelAlarmsStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchServiceLevelAlarmsResponse, Status>> + Send>>;

    async fn watch_service_level_alarms(
        &self,
        request: Request<pb::WatchServiceLevelAlarmsRequest>,
    ) -> Result<Response<Self::WatchServiceLevelAlarmsStream>, Status> {
        let claims = self.feedback.authorize_claims(&request)?;
        let request = request.into_inner();
        let queue = match request.queue.as_str() {
            "" => None,
            id => {
                let queue = QueueId::new(id);
                if self.feedback.region.queue(&queue).is_none() {
                    return Err(FeedbackError::InvalidArgument {
                        field: "queue",
                        reason: format!("no queue {id:?} in the region"),
                    }
                    .into());
                }
                Some(queue)
            }
        };
        let after = match request.after_sequence {
            0 => self
                .feedback
                .store
                .log_last_sequence()
                .await
                .map_err(FeedbackError::from)?,
            after => after,
        };
        let alarms = recorded_alarms(
            self.feedback.store.clone(),
            self.levels.clone(),
            after,
            queue,
        );
        let stream = futures::stream::unfold(alarms, |mut alarms| async move {
            let alarm = alarms.recv().await?;
            let answer = pb::WatchServiceLevelAlarmsResponse {
                alarm: Some(alarm_to_proto(&alarm)),
            };
            Some((Ok(answer), alarms))
        });
        // The feed ends when the supervisor's token expires or is revoked.
        Ok(Response::new(helpline_auth::guard_stream(
            &self.feedback.key,
            claims,
            Box::pin(stream),
        )))
    }

    async fn get_service_levels(
        &self,
        request: Request<pb::GetServiceLevelsRequest>,
    ) -> Result<Response<pb::GetServiceLevelsResponse>, Status> {
        self.feedback.authorize(&request)?;
        let request = request.into_inner();
        let (filter, group_by) = report_request(request.filter, request.group_by)?;
        let stream_last_sequence = self
            .feedback
            .store
            .log_last_sequence()
            .await
            .map_err(FeedbackError::from)?;
        let now = SystemTime::now();
        let (rows, applied_sequence) = self.levels.read_with(|projection| {
            (
                projection.report(&filter, &group_by, now),
                projection.last_sequence(),
            )
        });
        Ok(Response::new(pb::GetServiceLevelsResponse {
            rows: rows.iter().map(row_to_proto).collect(),
            position: Some(pb::CsatPosition {
                applied_sequence,
                stream_last_sequence: stream_last_sequence.max(applied_sequence),
                replayed: self.levels.is_replayed(),
            }),
        }))
    }
}

fn alarm_to_proto(alarm: &RecordedAlarm) -> pb::ServiceLevelAlarm {
    pb::ServiceLevelAlarm {
        ticket_id: alarm.ticket.to_string(),
        queue: alarm
            .queue
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        clock: sla_clock_to_proto(alarm.clock).into(),
        breached: alarm.level == SlaLevel::Breached,
        target_seconds: alarm.target.as_secs(),
        recorded_at: Some(prost_types::Timestamp::from(alarm.recorded_at)),
        sequence: alarm.sequence,
    }
}

fn row_to_proto(row: &LevelsRow) -> pb::ServiceLevelRow {
    pb::ServiceLevelRow {
        group: row.group.clone(),
        tickets: row.tickets,
        first_response: Some(clock_to_proto(&row.first_response)),
        next_response: Some(clock_to_proto(&row.next_response)),
        resolution: Some(clock_to_proto(&row.resolution)),
    }
}

fn clock_to_proto(figures: &ClockFigures) -> pb::ClockFigures {
    pb::ClockFigures {
        stopped: figures.stopped,
        average_seconds: figures.average().as_secs_f64(),
        met: figures.met,
        breached: figures.breached,
        attainment_percent: figures.attainment_percent(),
    }
}
