//! Bearer tokens of helpline's gRPC APIs (AgentDesk, TicketQuery, Privacy, Routing,
//! Feedback): JWTs naming the agent (`sub`) and their role, with an issuer, an audience
//! and an end.
//!
//! - **Keys.** Ed25519 (`EdDSA`): one signer holds the signing key
//!   (`auth.signing_key`: the operator's `helpline agent-token`, or the brand's identity
//!   provider), every service verifies with the public key alone (`auth.verify_key`), so
//!   a service that is broken into cannot mint tokens. The older shared HS256 secret
//!   (`auth.jwt_secret`) still works where no verify key is set: whoever holds it can
//!   both sign and verify.
//! - **Policy** ([`TokenPolicy`]): `iss` and `aud` must be the region's, `exp`, `iat`
//!   and `sub` are required, `nbf` is checked when present, a token may live at most
//!   `max_lifetime` (from `iat` to `exp`), and one issued in the future is refused.
//! - **Revocation.** [`AuthKey::revoke`] voids every token of an agent issued up to a
//!   moment (the binary feeds it from the region's revocations bucket, so it takes effect
//!   within seconds everywhere); [`guard_stream`] ends an open stream when its token
//!   expires or is revoked.
//!
//! **Invariants:** a token is checked on every call, never cached; a caller's role is
//! never above what the region's `[[agents]]` directory gives them; no error names a key.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use helpline_domain::AgentId;
use helpline_region::{Agent, RegionConfig, Role};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// How long an issued token may live unless the region says otherwise.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// How far a token's `iat` may lie ahead of this machine's clock (clocks drift).
const CLOCK_SKEW_SECS: u64 = 60;
/// How often an open stream looks whether its token was revoked.
const REVOCATION_CHECK: Duration = Duration::from_secs(1);

/// What a token must say besides who its bearer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPolicy {
    /// `iss`: who signs the region's tokens.
    pub issuer: String,
    /// `aud`: the region's APIs.
    pub audience: String,
    /// From `iat` to `exp` at most.
    pub max_lifetime: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            issuer: "helpline".to_owned(),
            audience: "helpline".to_owned(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }
}

enum Keys {
    /// HS256: the one secret signs and verifies.
    Shared(Vec<u8>),
    /// EdDSA: the public key verifies; the signing key only where tokens are issued.
    Ed25519 {
        verify: DecodingKey,
        sign: Option<EncodingKey>,
    },
}

struct Inner {
    keys: Keys,
    policy: TokenPolicy,
    /// Per agent: tokens issued at or before this Unix second are void.
    revoked: RwLock<HashMap<String, u64>>,
}

/// The key tokens are signed and checked with, the policy they are checked against and
/// the agents whose tokens were revoked. Cloning shares all three. `Debug` prints `***`.
#[derive(Clone)]
pub struct AuthKey(Arc<Inner>);

impl AuthKey {
    /// Shared secrets shorter than this are refused: HS256 is only as strong as its
    /// secret.
    pub const MIN_BYTES: usize = 32;

    /// An HS256 key (the shared `auth.jwt_secret`) under the default policy.
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, AuthError> {
        let secret = secret.into();
        if secret.len() < Self::MIN_BYTES {
            return Err(AuthError::WeakKey(Self::MIN_BYTES));
        }
        Ok(Self::with(Keys::Shared(secret), TokenPolicy::default()))
    }

    /// Verifies with the Ed25519 public key `verify_key` (64 hex digits); signs too
    /// when `signing_key` (the 64-hex-digit seed) is given, which must belong to it.
    pub fn ed25519(verify_key: &str, signing_key: Option<&str>) -> Result<Self, AuthError> {
        let public = hex32(verify_key, "verify key")?;
        let sign = match signing_key {
            None => None,
            Some(seed) => {
                let seed = hex32(seed, "signing key")?;
                let derived = ed25519_dalek::SigningKey::from_bytes(&seed)
                    .verifying_key()
                    .to_bytes();
                if derived != public {
                    return Err(AuthError::Key(
                        "the signing key does not belong to the verify key".to_owned(),
                    ));
                }
                Some(EncodingKey::from_ed_der(&pkcs8(&seed)))
            }
        };
        Ok(Self::with(
            Keys::Ed25519 {
                verify: DecodingKey::from_ed_der(&public),
                sign,
            },
            TokenPolicy::default(),
        ))
    }

    /// A new Ed25519 key pair: (verify key, signing key), each 64 hex digits.
    pub fn generate_ed25519() -> Result<(String, String), AuthError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| AuthError::Key(e.to_string()))?;
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        Ok((hex::encode(public), hex::encode(seed)))
    }

    /// The secret of [`AuthKey::development`]. Public: a process with a configuration file
    /// refuses it as any of its secrets.
    pub const DEVELOPMENT_SECRET: &'static str =
        "helpline-development-key-never-use-it-in-a-deployment";

    /// The fixed key of `helpline dev` and of runs without a configuration file. Anyone
    /// can read it here, so it must never sign a deployment's tokens.
    pub fn development() -> Self {
        Self::with(
            Keys::Shared(Self::DEVELOPMENT_SECRET.as_bytes().to_vec()),
            TokenPolicy::default(),
        )
    }

    /// The same key under `policy` (revocations start empty).
    pub fn with_policy(&self, policy: TokenPolicy) -> Self {
        let keys = match &self.0.keys {
            Keys::Shared(secret) => Keys::Shared(secret.clone()),
            Keys::Ed25519 { verify, sign } => Keys::Ed25519 {
                verify: verify.clone(),
                sign: sign.clone(),
            },
        };
        Self::with(keys, policy)
    }

    fn with(keys: Keys, policy: TokenPolicy) -> Self {
        Self(Arc::new(Inner {
            keys,
            policy,
            revoked: RwLock::default(),
        }))
    }

    pub fn policy(&self) -> &TokenPolicy {
        &self.0.policy
    }

    /// Whether this key can issue tokens (a shared secret, or an Ed25519 signing key).
    pub fn can_sign(&self) -> bool {
        match &self.0.keys {
            Keys::Shared(_) => true,
            Keys::Ed25519 { sign, .. } => sign.is_some(),
        }
    }

    /// Voids `agent`'s tokens issued at or before `until` (Unix seconds); a later
    /// revocation of the same agent replaces an earlier one only if it reaches further.
    pub fn revoke(&self, agent: &str, until: u64) {
        let mut revoked = self
            .0
            .revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = revoked.entry(agent.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Lifts `agent`'s revocation (the bucket's entry was deleted).
    pub fn reinstate(&self, agent: &str) {
        self.0
            .revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(agent);
    }

    /// Up to which Unix second `agent`'s tokens are void, if they were revoked.
    pub fn revoked_until(&self, agent: &str) -> Option<u64> {
        self.0
            .revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent)
            .copied()
    }

    fn is_revoked(&self, claims: &Claims) -> bool {
        self.0
            .revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&claims.sub)
            .is_some_and(|until| claims.iat <= *until)
    }

    fn algorithm(&self) -> Algorithm {
        match self.0.keys {
            Keys::Shared(_) => Algorithm::HS256,
            Keys::Ed25519 { .. } => Algorithm::EdDSA,
        }
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The 32 bytes of a key written as 64 hex digits.
fn hex32(text: &str, what: &str) -> Result<[u8; 32], AuthError> {
    let bytes = hex::decode(text.trim())
        .map_err(|_| AuthError::Key(format!("the {what} is not hex digits")))?;
    bytes
        .try_into()
        .map_err(|_| AuthError::Key(format!("the {what} must be 64 hex digits (32 bytes)")))
}

/// An Ed25519 seed as PKCS#8 v1 DER, the form the signer takes.
fn pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

/// What a token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The agent's id, as in `[[agents]]`.
    pub sub: String,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    /// Unix seconds.
    pub iat: u64,
    /// Unix seconds; not valid before, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Unix seconds; the token is refused from then on.
    pub exp: u64,
}

impl Claims {
    /// When the token stops being valid.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.exp)
    }
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
    #[error("the token was revoked")]
    Revoked,
    #[error("the signing key must be at least {0} bytes")]
    WeakKey(usize),
    #[error("{0}")]
    Key(String),
    #[error("this key only verifies: tokens are issued where the signing key is")]
    CannotSign,
}

/// A token for `agent` with `role`, valid for `ttl` from `now`, under the key's policy;
/// a `ttl` over the policy's maximum lifetime is refused.
pub fn issue(
    key: &AuthKey,
    agent: &str,
    role: Role,
    ttl: Duration,
    now: SystemTime,
) -> Result<String, AuthError> {
    let policy = key.policy();
    if ttl > policy.max_lifetime {
        return Err(AuthError::Invalid(format!(
            "a token may live at most {} s",
            policy.max_lifetime.as_secs()
        )));
    }
    let iat = unix_secs(now);
    let claims = Claims {
        sub: agent.to_owned(),
        role,
        iss: policy.issuer.clone(),
        aud: policy.audience.clone(),
        iat,
        nbf: None,
        exp: iat.saturating_add(ttl.as_secs()),
    };
    let encoding = match &key.0.keys {
        Keys::Shared(secret) => EncodingKey::from_secret(secret),
        Keys::Ed25519 {
            sign: Some(sign), ..
        } => sign.clone(),
        Keys::Ed25519 { sign: None, .. } => return Err(AuthError::CannotSign),
    };
    jsonwebtoken::encode(&Header::new(key.algorithm()), &claims, &encoding)
        .map_err(|e| AuthError::Invalid(e.to_string()))
}

/// The claims of `token` when its signature is the key's and it holds to the policy
/// now: issuer, audience, not expired, valid already, not too long-lived, not revoked.
pub fn verify(key: &AuthKey, token: &str) -> Result<Claims, AuthError> {
    verify_at(key, token, SystemTime::now())
}

fn verify_at(key: &AuthKey, token: &str, now: SystemTime) -> Result<Claims, AuthError> {
    let policy = key.policy();
    let mut validation = Validation::new(key.algorithm());
    // An expired token is refused from its `exp` on, not a minute later.
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub", "iat", "iss", "aud"]);
    validation.set_issuer(&[policy.issuer.as_str()]);
    validation.set_audience(&[policy.audience.as_str()]);
    let decoding = match &key.0.keys {
        Keys::Shared(secret) => DecodingKey::from_secret(secret),
        Keys::Ed25519 { verify, .. } => verify.clone(),
    };
    let claims = jsonwebtoken::decode::<Claims>(token, &decoding, &validation)
        .map_err(|e| AuthError::Invalid(e.to_string()))?
        .claims;
    let now = unix_secs(now);
    if claims.iat > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(AuthError::Invalid("issued in the future".to_owned()));
    }
    if claims.exp.saturating_sub(claims.iat) > policy.max_lifetime.as_secs() {
        return Err(AuthError::Invalid(format!(
            "lives longer than the region's maximum of {} s",
            policy.max_lifetime.as_secs()
        )));
    }
    if key.is_revoked(&claims) {
        return Err(AuthError::Revoked);
    }
    Ok(claims)
}

/// Who calls a gRPC API: the `[[agents]]` entry the request's bearer token names, and
/// the lower of the token's role and the directory's. A missing, bad, expired or
/// revoked token, or one naming nobody in the region, is refused (`UNAUTHENTICATED`).
pub fn caller<'r, T>(
    key: &AuthKey,
    request: &tonic::Request<T>,
    region: &'r RegionConfig,
) -> Result<(&'r Agent, Role), AuthError> {
    caller_claims(key, request, region).map(|(agent, role, _)| (agent, role))
}

/// [`caller`], with the token's claims: what a stream needs to end with its token.
pub fn caller_claims<'r, T>(
    key: &AuthKey,
    request: &tonic::Request<T>,
    region: &'r RegionConfig,
) -> Result<(&'r Agent, Role, Claims), AuthError> {
    let header = match request.metadata().get("authorization") {
        Some(value) => Some(value.to_str().map_err(|_| AuthError::NotBearer)?),
        None => None,
    };
    let claims = verify(key, bearer(header)?)?;
    let agent = region
        .agent(&AgentId::new(claims.sub.as_str()))
        .ok_or_else(|| AuthError::Invalid(format!("no agent {} in the region", claims.sub)))?;
    let role = claims.role.min(agent.role);
    Ok((agent, role, claims))
}

/// `stream`, ended with `UNAUTHENTICATED` when the token of `claims` expires or is
/// revoked: an open stream is never worth more than the token that opened it.
pub fn guard_stream<T>(
    key: &AuthKey,
    claims: Claims,
    stream: Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>,
) -> Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>
where
    T: Send + 'static,
{
    let key = key.clone();
    let ended = async move {
        let expires_in = claims
            .expires_at()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let expiry = tokio::time::sleep(expires_in);
        tokio::pin!(expiry);
        let mut checks = tokio::time::interval(REVOCATION_CHECK);
        loop {
            tokio::select! {
                _ = &mut expiry => return tonic::Status::unauthenticated("the token expired"),
                _ = checks.tick() => {
                    if key.is_revoked(&claims) {
                        return tonic::Status::unauthenticated("the token was revoked");
                    }
                }
            }
        }
    };
    let ended: Pin<Box<dyn Future<Output = tonic::Status> + Send>> = Box::pin(ended);
    // Whichever comes first: the stream's own end, or the token's (said as the last item).
    Box::pin(futures::stream::unfold(
        Some((stream, ended)),
        |state| async move {
            let (mut stream, mut ended) = state?;
            tokio::select! {
                biased;
                item = stream.next() => item.map(|item| (item, Some((stream, ended)))),
                status = &mut ended => Some((Err(status), None)),
            }
        },
    ))
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

    /// A token of `key`'s shared secret saying exactly `claims`.
    fn forged(claims: &Claims) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn now_secs() -> u64 {
        unix_secs(SystemTime::now())
    }

    fn claims() -> Claims {
        Claims {
            sub: "anna".to_owned(),
            role: Role::Agent,
            iss: "helpline".to_owned(),
            aud: "helpline".to_owned(),
            iat: now_secs(),
            nbf: None,
            exp: now_secs() + 600,
        }
    }

    #[test]
    fn a_token_must_name_the_regions_issuer_and_audience() {
        assert!(verify(&key(), &forged(&claims())).is_ok());
        let other_issuer = Claims {
            iss: "someone-else".to_owned(),
            ..claims()
        };
        assert!(verify(&key(), &forged(&other_issuer)).is_err());
        let other_audience = Claims {
            aud: "helpline-fr".to_owned(),
            ..claims()
        };
        assert!(verify(&key(), &forged(&other_audience)).is_err());
    }

    #[test]
    fn not_yet_valid_future_and_over_long_lived_tokens_are_refused() {
        let not_yet = Claims {
            nbf: Some(now_secs() + 300),
            ..claims()
        };
        assert!(verify(&key(), &forged(&not_yet)).is_err(), "nbf ahead");
        let from_the_future = Claims {
            iat: now_secs() + 3600,
            exp: now_secs() + 4000,
            ..claims()
        };
        assert!(
            verify(&key(), &forged(&from_the_future)).is_err(),
            "iat ahead"
        );
        let century = Claims {
            exp: now_secs() + 100 * 365 * 24 * 3600,
            ..claims()
        };
        assert!(verify(&key(), &forged(&century)).is_err(), "100 years");
        // Nor are they issued.
        assert!(
            issue(
                &key(),
                "anna",
                Role::Agent,
                DEFAULT_MAX_LIFETIME + Duration::from_secs(1),
                SystemTime::now()
            )
            .is_err()
        );
        // The region's policy decides.
        let short = key().with_policy(TokenPolicy {
            max_lifetime: Duration::from_secs(300),
            ..TokenPolicy::default()
        });
        assert!(
            verify(&short, &forged(&claims())).is_err(),
            "10 min > 5 min"
        );
    }

    #[test]
    fn a_revoked_agents_tokens_issued_before_the_revocation_are_refused() {
        let key = key();
        let before = issue(
            &key,
            "anna",
            Role::Agent,
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let jonas = issue(
            &key,
            "jonas",
            Role::Agent,
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        key.revoke("anna", now_secs());
        assert!(matches!(verify(&key, &before), Err(AuthError::Revoked)));
        assert!(verify(&key, &jonas).is_ok(), "only anna's tokens");
        // Signed in again after the revocation: valid.
        let after = issue(
            &key,
            "anna",
            Role::Agent,
            Duration::from_secs(60),
            SystemTime::now() + Duration::from_secs(2),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(verify(&key, &after).is_ok());
        key.reinstate("anna");
        assert!(verify(&key, &before).is_ok());
    }

    #[test]
    fn ed25519_tokens_are_signed_by_the_signer_alone_and_verified_with_the_public_key() {
        let (public, seed) = AuthKey::generate_ed25519().unwrap_or_else(|e| panic!("{e}"));
        let signer = AuthKey::ed25519(&public, Some(&seed)).unwrap_or_else(|e| panic!("{e}"));
        let verifier = AuthKey::ed25519(&public, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(signer.can_sign() && !verifier.can_sign());
        let token = issue(
            &signer,
            "anna",
            Role::Supervisor,
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            verify(&verifier, &token).map(|c| c.role).ok(),
            Some(Role::Supervisor)
        );
        assert!(matches!(
            issue(
                &verifier,
                "anna",
                Role::Admin,
                Duration::from_secs(60),
                SystemTime::now()
            ),
            Err(AuthError::CannotSign)
        ));
        // An HS256 token, even one whose secret is the public key, is not accepted.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(verify(&verifier, &hs).is_err());
        // Another pair's token is refused; a signing key of another pair is refused.
        let (other_public, other_seed) =
            AuthKey::generate_ed25519().unwrap_or_else(|e| panic!("{e}"));
        let other =
            AuthKey::ed25519(&other_public, Some(&other_seed)).unwrap_or_else(|e| panic!("{e}"));
        let foreign = issue(
            &other,
            "anna",
            Role::Admin,
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(verify(&verifier, &foreign).is_err());
        assert!(AuthKey::ed25519(&public, Some(&other_seed)).is_err());
        assert!(AuthKey::ed25519("not hex", None).is_err());
    }

    #[tokio::test]
    async fn an_open_stream_ends_when_its_token_expires_or_is_revoked() {
        use futures::StreamExt as _;
        let key = key();
        let endless = || -> Pin<Box<dyn Stream<Item = Result<u32, tonic::Status>> + Send>> {
            Box::pin(futures::stream::pending())
        };
        let expiring = Claims {
            exp: now_secs() + 1,
            ..claims()
        };
        let mut stream = guard_stream(&key, expiring, endless());
        let end = stream.next().await;
        assert!(
            matches!(&end, Some(Err(status)) if status.code() == tonic::Code::Unauthenticated),
            "{end:?}"
        );
        assert!(stream.next().await.is_none(), "nothing after the end");

        let mut stream = guard_stream(&key, claims(), endless());
        key.revoke("anna", now_secs());
        let end = stream.next().await;
        assert!(
            matches!(&end, Some(Err(status)) if status.message().contains("revoked")),
            "{end:?}"
        );

        // A stream that ends by itself just ends.
        let finite: Pin<Box<dyn Stream<Item = Result<u32, tonic::Status>> + Send>> =
            Box::pin(futures::stream::iter([Ok(1), Ok(2)]));
        let items: Vec<_> = guard_stream(
            &key,
            Claims {
                sub: "jonas".to_owned(),
                ..claims()
            },
            finite,
        )
        .collect()
        .await;
        assert_eq!(items.len(), 2);
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
