//! The `helpline.v1.Privacy` API: erasure and export, for admins only.

use helpline_auth::AuthKey;
use helpline_auth::caller;
use std::sync::Arc;

use helpline_domain::contact;
use helpline_eventstore::CustomerId;
use helpline_eventstore::codec::channel_from_proto_value;
use helpline_proto::v1 as pb;
use helpline_proto::v1::customer_ref::Customer as CustomerProto;
use helpline_proto::v1::privacy_server::{Privacy as PrivacyApi, PrivacyServer};
use helpline_region::{RegionConfig, Role};
use tonic::{Request, Response, Status};

use crate::error::PrivacyError;
use crate::rights::{Privacy, Reason};

/// The Privacy API: every call needs a bearer token signed with `key` whose role is admin,
/// for someone the region's directory (`[[agents]]`) names as admin (the lower of the
/// two roles counts).
pub fn grpc_service(
    privacy: Privacy,
    key: AuthKey,
    region: Arc<RegionConfig>,
) -> PrivacyServer<impl PrivacyApi> {
    PrivacyServer::new(Api {
        privacy,
        key,
        region,
    })
}

#[derive(Debug)]
struct Api {
    privacy: Privacy,
    key: AuthKey,
    region: Arc<RegionConfig>,
}

impl Api {
    /// The admin calling, or why not: no or a bad token is `UNAUTHENTICATED`, anyone
    /// but an admin `PERMISSION_DENIED`.
    fn admin<T>(&self, request: &Request<T>) -> Result<String, PrivacyError> {
        let (agent, role) = caller(&self.key, request, &self.region)
            .map_err(|e| PrivacyError::Unauthenticated(e.to_string()))?;
        if role != Role::Admin {
            return Err(PrivacyError::PermissionDenied(format!(
                "{} is not an admin; the Privacy API is for admins only",
                agent.id
            )));
        }
        Ok(agent.id.to_string())
    }

    /// The customer a request names: their pseudonym as given, or derived from channel
    /// and contact in its stored form (`INVALID_ARGUMENT` for a contact the channel could
    /// not have, e.g. a national phone number).
    fn customer(&self, customer: Option<pb::CustomerRef>) -> Result<CustomerId, PrivacyError> {
        let customer = customer
            .and_then(|c| c.customer)
            .ok_or_else(|| PrivacyError::invalid("customer", "give a contact or a customer_id"))?;
        match customer {
            CustomerProto::CustomerId(id) => CustomerId::parse(&id).ok_or_else(|| {
                PrivacyError::invalid("customer.customer_id", "not a customer id (32 hex digits)")
            }),
            CustomerProto::Contact(contact) => {
                let channel = channel_from_proto_value(contact.channel)
                    .map_err(|reason| PrivacyError::invalid("customer.contact.channel", reason))?
                    .ok_or_else(|| {
                        PrivacyError::invalid("customer.contact.channel", "name the channel")
                    })?;
                // The pseudonym is of the stored form, so any spelling of the contact
                // must become that form to name the same customer.
                let address = contact::normalize(channel, &contact.address).map_err(|e| {
                    PrivacyError::invalid("customer.contact.address", e.to_string())
                })?;
                Ok(self.privacy.store().customer_id(channel, &address))
            }
        }
    }
}

#[tonic::async_trait]
impl PrivacyApi for Api {
    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let admin = self.admin(&request)?;
        let customer = self.customer(request.into_inner().customer)?;
        tracing::info!(%admin, %customer, "erasure requested");
        let erasure = self.privacy.erase(&customer, Reason::Request).await?;
        Ok(Response::new(pb::EraseCustomerResponse {
            customer_id: customer.to_string(),
            ticket_ids: erasure.tickets.iter().map(ToString::to_string).collect(),
            key_purged: erasure.key_purged,
            tickets_newly_erased: erasure.tickets_newly_erased,
            linked_customer_ids: erasure.linked.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn export_customer(
        &self,
        request: Request<pb::ExportCustomerRequest>,
    ) -> Result<Response<pb::ExportCustomerResponse>, Status> {
        let admin = self.admin(&request)?;
        let customer = self.customer(request.into_inner().customer)?;
        tracing::info!(%admin, %customer, "export requested");
        let export = self.privacy.export(&customer).await?;
        let json = serde_json::to_string_pretty(&export)
            .map_err(|e| Status::internal(format!("export: {e}")))?;
        Ok(Response::new(pb::ExportCustomerResponse {
            customer_id: customer.to_string(),
            json,
        }))
    }
}
