//! Bearer tokens of helpline's gRPC APIs (AgentDesk, TicketQuery, Privacy): JWTs signed
//! with the region's key (HS256), naming the agent (`sub`) and their role, with an
//! expiry. `helpline agent-token` issues them for development; production tokens come
//! from the brand's identity provider, signed with the same key.
//!
//! **Owns** no state. **Invariants:** a token is checked on every call, never cached; a
//! caller's role is never above what the region's `[[agents]]` directory gives them.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use helpline_domain::AgentId;
use helpline_region::{Agent, RegionConfig, Role};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The key tokens are signed and checked with. `Debug` prints `***`.
#[derive(Clone)]
pub struct AuthKey(Vec<u8>);

impl AuthKey {
    /// Keys shorter than this are refused: HS256 is only as strong as its secret.
    pub const MIN_BYTES: usize = 32;

    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, AuthError> {
        let secret = secret.into();
        if secret.len() < Self::MIN_BYTES {
            return Err(AuthError::WeakKey(Self::MIN_BYTES));
        }
        Ok(Self(secret))
    }

    /// The fixed key of `helpline dev` and of runs without a configuration file. Anyone
    /// can read it here, so it must never sign a deployment's tokens.
    pub fn development() -> Self {
        Self(b"helpline-development-key-never-use-it-in-a-deployment".to_vec())
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What a token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The agent's id, as in `[[agents]]`.
    pub sub: String,
    pub role: Role,
    /// Unix seconds.
    pub iat: u64,
    /// Unix seconds; the token is refused from then on.
    pub exp: u64,
}

/// Why a token was refused (`UNAUTHENTICATED`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `authorization: Bearer <token>`")]
    Missing,
    #[error("the authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("the signing key must be at least {0} bytes")]
    WeakKey(usize),
}

/// A token for `agent` with `role`, valid for `ttl` from `now`.
pub fn issue(
    key: &AuthKey,
    agent: &str,
    role: Role,
    ttl: Duration,
    now: SystemTime,
) -> Result<String, AuthError> {
    let iat = unix_secs(now);
    let claims = Claims {
        sub: agent.to_owned(),
        role,
        iat,
        exp: iat.saturating_add(ttl.as_secs()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&key.0),
    )
    .map_err(|e| AuthError::Invalid(e.to_string()))
}

/// The claims of `token` when its signature is the key's and it has not expired.
pub fn verify(key: &AuthKey, token: &str) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    // An expired token is refused from its `exp` on, not a minute later.
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&key.0), &validation)
        .map(|data| data.claims)
        .map_err(|e| AuthError::Invalid(e.to_string()))
}

/// Who calls a gRPC API: the `[[agents]]` entry the request's bearer token names, and
/// the lower of the token's role and the directory's. A missing, bad or expired token, or
/// one naming nobody in the region, is refused (`UNAUTHENTICATED`).
pub fn caller<'r, T>(
    key: &AuthKey,
    request: &tonic::Request<T>,
    region: &'r RegionConfig,
) -> Result<(&'r Agent, Role), AuthError> {
    let header = match request.metadata().get("authorization") {
        Some(value) => Some(value.to_str().map_err(|_| AuthError::NotBearer)?),
        None => None,
    };
    let claims = verify(key, bearer(header)?)?;
    let agent = region
        .agent(&AgentId::new(claims.sub.as_str()))
        .ok_or_else(|| AuthError::Invalid(format!("no agent {} in the region", claims.sub)))?;
    Ok((agent, claims.role.min(agent.role)))
}

/// The token of an `authorization` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = header.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::NotBearer);
    }
    Ok(token.trim())
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuthKey {
        AuthKey::new(vec![7u8; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_token_verifies_with_its_key_and_names_agent_and_role() {
        let token = issue(
            &key(),
            "anna",
            Role::Supervisor,
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let claims = verify(&key(), &token).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claims.sub, "anna");
        assert_eq!(claims.role, Role::Supervisor);
    }

    #[test]
    fn expired_tokens_and_other_keys_are_refused() {
        let past = SystemTime::now() - Duration::from_secs(3600);
        let expired = issue(&key(), "anna", Role::Agent, Duration::from_secs(60), past)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(verify(&key(), &expired).is_err());
        let other = issue(
            &AuthKey::development(),
            "anna",
            Role::Agent,
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(verify(&key(), &other).is_err());
        assert!(verify(&key(), "not.a.token").is_err());
    }

    #[test]
    fn only_bearer_headers_carry_a_token() {
        assert_eq!(bearer(Some("Bearer abc")).ok(), Some("abc"));
        assert!(matches!(bearer(None), Err(AuthError::Missing)));
        assert!(matches!(
            bearer(Some("Basic abc")),
            Err(AuthError::NotBearer)
        ));
        assert!(matches!(bearer(Some("Bearer ")), Err(AuthError::NotBearer)));
        assert!(AuthKey::new("short").is_err());
        assert_eq!(format!("{:?}", key()), "***");
    }
}
