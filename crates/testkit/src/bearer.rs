//! Bearer tokens for tests of the authenticated gRPC APIs: a fixed key both sides use,
//! and a client interceptor that sends an agent's token with every call.

use std::time::{Duration, SystemTime};

use helpline_auth::{AuthError, AuthKey};
use helpline_region::Role;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The key tests sign and check tokens with (never a deployment's).
pub fn test_key() -> AuthKey {
    // 32 bytes, the least a key may have.
    AuthKey::new(*b"helpline-tests-only-signing-key!").unwrap_or_else(|_| AuthKey::development())
}

/// A token for `agent` (an `[[agents]]` id of the region) with `role`, valid ten minutes.
pub fn token(key: &AuthKey, agent: &str, role: Role) -> Result<String, AuthError> {
    helpline_auth::issue(
        key,
        agent,
        role,
        Duration::from_secs(600),
        SystemTime::now(),
    )
}

/// Sends `authorization: Bearer <token>` with every call of the client it is given to
/// (`XClient::with_interceptor(channel, bearer)`).
#[derive(Clone, Debug)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    /// `agent`'s token under [`test_key`].
    pub fn new(agent: &str, role: Role) -> Result<Self, AuthError> {
        Self::with_token(&token(&test_key(), agent, role)?)
    }

    pub fn with_token(token: &str) -> Result<Self, AuthError> {
        format!("Bearer {token}")
            .parse()
            .map(Self)
            .map_err(|_| AuthError::NotBearer)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}
