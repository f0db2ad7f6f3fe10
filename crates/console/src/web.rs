//! The console's HTTP routes: its pages, sign-in and sign-out, who is signed in, and the
//! gRPC-Web calls passed on to the services.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tower::ServiceExt as _;

use crate::session::{self, SESSION_COOKIE};
use crate::{Console, widget};

/// The console's routes, to be served on `[console] listen`.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/console.js",
            get(|| async { page(CONSOLE_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console.css",
            get(|| async { page(CONSOLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/sign-in", post(sign_in))
        .route("/api/sign-out", post(sign_out))
        .route("/api/session", get(current_session))
        .route("/helpline.v1.AgentDesk/{method}", post(pass_on))
        .route("/helpline.v1.TicketQuery/{method}", post(pass_on))
        .route("/helpline.v1.Feedback/{method}", post(pass_on))
        .route("/helpline.v1.Reports/{method}", post(pass_on))
        .route(
            "/widget.js",
            get(|| async { page(WIDGET_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/widget/demo",
            get(|| async { page(WIDGET_DEMO_HTML, "text/html; charset=utf-8") }),
        )
        .route("/widget/callback", post(widget::callback))
        .route("/widget/uploads/{name}", get(widget::uploaded))
        .nest("/widget/api", widget_api(console.clone()))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::map_response(protect))
        .with_state(console)
}

/// The widget's API, called from the brand's pages (another origin).
fn widget_api(console: Arc<Console>) -> Router<Arc<Console>> {
    Router::new()
        .route("/sessions", post(widget::open_session))
        .route("/messages", post(widget::send))
        .route("/events", get(widget::events))
        .route("/uploads", post(widget::upload))
        .layer(axum::middleware::from_fn_with_state(
            console,
            widget::cross_origin,
        ))
}

const INDEX_HTML: &str = include_str!("../web/index.html");
/// `web/dist/widget.js`, the script a site embeds (`build.rs`, as the console's).
const WIDGET_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/widget.js"));
const WIDGET_DEMO_HTML: &str = include_str!("../web/widget-demo.html");
/// `web/dist/console.js` as `npm run build` made it, or a page that says to build it
/// (`build.rs`).
const CONSOLE_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/console.js"));
const CONSOLE_CSS: &str = include_str!("../web/console.css");

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Every answer: scripts and styles from this origin only, never framed, never sniffed,
/// no referrer sent on.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
             form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[derive(Serialize)]
struct Problem<'a> {
    error: &'a str,
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(Problem { error: message })).into_response()
}

#[derive(Deserialize)]
struct SignIn {
    agent: String,
    password: String,
}

/// Who is signed in, as the pages show it.
#[derive(Serialize)]
struct Who {
    agent: String,
    name: String,
    role: &'static str,
    /// The agent's languages (BCP 47), from `[[agents]]`: the page speaks the first it has.
    languages: Vec<String>,
    /// Unix seconds.
    expires_at: u64,
}

const REFUSED: &str = "unknown agent or wrong password";

async fn sign_in(State(console): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Response {
    // Only a page's script sends JSON; a form on another site cannot without the browser
    // asking this origin first (a CORS preflight it never grants).
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "sign-in takes application/json",
        );
    }
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "sign-in request too large");
    };
    let Ok(request) = serde_json::from_slice::<SignIn>(&bytes) else {
        return error(
            StatusCode::BAD_REQUEST,
            "sign-in takes {\"agent\": …, \"password\": …}",
        );
    };
    if !console.failures.may_try(&request.agent) {
        tracing::warn!(agent = %request.agent, "sign-in refused: too many failed attempts");
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed sign-ins for this agent; try again in a minute",
        );
    }
    let valid = match console
        .credentials
        .check(&request.agent, &request.password)
        .await
    {
        Ok(valid) => valid,
        Err(e) => {
            tracing::error!(error = %e, "sign-in: the credentials could not be read");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "sign-in is unavailable right now",
            );
        }
    };
    let agent = console.agents.get(&request.agent).filter(|_| valid);
    let Some(agent) = agent else {
        console.failures.failed(&request.agent);
        tracing::info!(agent = %request.agent, "sign-in refused");
        return error(StatusCode::UNAUTHORIZED, REFUSED);
    };
    console.failures.succeeded(&request.agent);
    // Signed out moments ago: tokens issued up to that second are void, so this one is
    // issued in the next.
    if let Some(until) = console.key.revoked_until(&request.agent) {
        let next = SystemTime::UNIX_EPOCH + Duration::from_secs(until.saturating_add(1));
        if let Ok(wait) = next.duration_since(SystemTime::now()) {
            tokio::time::sleep(wait).await;
        }
    }
    let ttl = console
        .session_ttl
        .min(console.key.policy().max_lifetime)
        .max(Duration::from_secs(1));
    let token = match helpline_auth::issue(
        &console.key,
        &request.agent,
        agent.role,
        ttl,
        SystemTime::now(),
    ) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "sign-in: no token could be issued");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "sign-in is unavailable right now",
            );
        }
    };
    tracing::info!(agent = %request.agent, role = agent.role.as_str(), "signed in to the console");
    let who = Who {
        agent: request.agent.clone(),
        name: agent.name.clone(),
        role: agent.role.as_str(),
        languages: agent.languages.clone(),
        expires_at: unix_secs(SystemTime::now() + ttl),
    };
    let [session_cookie, csrf_cookie] = session::open(&token, ttl);
    let mut response = axum::Json(who).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, session_cookie);
    response
        .headers_mut()
        .append(header::SET_COOKIE, csrf_cookie);
    response
}

/// Ends the session: on the server first — every token of the agent issued until now is
/// void, in every service within seconds (`AgentDesk.RevokeTokens` for oneself) — then in
/// the browser (both cookies cleared). 204; 503 when the services could not be told, the
/// cookies cleared all the same.
async fn sign_out(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let mut status = StatusCode::NO_CONTENT;
    if let Some(token) = session::cookie(&headers, SESSION_COOKIE) {
        // Ending someone's session is a state change like any other: a session that is
        // there must be ended by its own page.
        if !session::csrf_holds(&headers, token) {
            return error(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
        }
        if let Ok(claims) = helpline_auth::verify(&console.key, token) {
            match revoke_own_tokens(&console, token).await {
                Ok(until) => {
                    // This console at once; the services as they follow the bucket.
                    console.key.revoke(&claims.sub, until);
                    tracing::info!(agent = %claims.sub, "signed out of the console");
                }
                Err(e) => {
                    tracing::warn!(agent = %claims.sub, error = %e, "sign-out: the session could not be ended on the server");
                    status = StatusCode::SERVICE_UNAVAILABLE;
                }
            }
        }
    }
    let mut response = if status == StatusCode::NO_CONTENT {
        status.into_response()
    } else {
        error(
            status,
            "signed out of this browser, but the session could not be ended on the server; sign out again",
        )
    };
    for cookie in session::close() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Asks AgentDesk to void the caller's tokens issued until now: the Unix second it did.
async fn revoke_own_tokens(console: &Console, token: &str) -> Result<u64, tonic::Status> {
    let mut request = tonic::Request::new(helpline_proto::v1::RevokeTokensRequest {
        agent_id: String::new(),
    });
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| tonic::Status::unauthenticated("the session is not valid"))?;
    request.metadata_mut().insert("authorization", bearer);
    let answer = helpline_proto::v1::agent_desk_client::AgentDeskClient::new(
        console.upstreams.agent_desk.clone(),
    )
    .revoke_tokens(request)
    .await?
    .into_inner();
    Ok(answer
        .revoked_until
        .map_or(0, |at| u64::try_from(at.seconds).unwrap_or_default()))
}

/// Who is signed in: 200 with [`Who`], or 204 when nobody is (no cookie, or a session
/// that ended or is not valid). Not a 401: a page asks this first thing, and for a page
/// nobody is signed in to yet, that is no error.
async fn current_session(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let Ok((_, claims)) = session_of(&console, &headers) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let (name, languages) = console
        .agents
        .get(&claims.sub)
        .map(|agent| (agent.name.clone(), agent.languages.clone()))
        .unwrap_or_default();
    axum::Json(Who {
        agent: claims.sub,
        name,
        role: claims.role.as_str(),
        languages,
        expires_at: claims.exp,
    })
    .into_response()
}

/// Why a request carries no valid session.
enum NoSession {
    /// No session cookie.
    Missing,
    /// A cookie whose token is forged, expired or revoked.
    Invalid(helpline_auth::AuthError),
}

/// The session's token in `headers` and what it says, when it is valid now.
fn session_of<'h>(
    console: &Console,
    headers: &'h HeaderMap,
) -> Result<(&'h str, helpline_auth::Claims), NoSession> {
    let token = session::cookie(headers, SESSION_COOKIE).ok_or(NoSession::Missing)?;
    let claims = helpline_auth::verify(&console.key, token).map_err(NoSession::Invalid)?;
    Ok((token, claims))
}

/// A gRPC-Web call from a page, passed on to its service with the session's token.
async fn pass_on(State(console): State<Arc<Console>>, request: Request) -> Response {
    let service = request
        .uri()
        .path()
        .split('/')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let channel = match service.as_str() {
        "helpline.v1.AgentDesk" => console.upstreams.agent_desk.clone(),
        "helpline.v1.TicketQuery" => console.upstreams.ticket_query.clone(),
        // Reports is served beside Feedback, by the same process.
        "helpline.v1.Feedback" | "helpline.v1.Reports" => console.upstreams.feedback.clone(),
        _ => {
            return grpc_refusal(
                StatusCode::NOT_FOUND,
                tonic::Code::Unimplemented,
                "no such service",
            );
        }
    };
    let token = match session_of(&console, request.headers()) {
        Ok((token, _)) => token.to_owned(),
        Err(NoSession::Missing) => {
            return grpc_refusal(
                StatusCode::UNAUTHORIZED,
                tonic::Code::Unauthenticated,
                "not signed in",
            );
        }
        Err(NoSession::Invalid(e)) => {
            tracing::debug!(error = %e, "console call refused");
            return grpc_refusal(
                StatusCode::UNAUTHORIZED,
                tonic::Code::Unauthenticated,
                "the session ended or is not valid; sign in again",
            );
        }
    };
    if !session::csrf_holds(request.headers(), &token) {
        return grpc_refusal(
            StatusCode::FORBIDDEN,
            tonic::Code::PermissionDenied,
            "missing or wrong CSRF token",
        );
    }
    let (mut parts, body) = request.into_parts();
    // The services read the bearer token; the cookies are the console's own business.
    parts.headers.remove(header::COOKIE);
    parts.headers.remove(session::CSRF_HEADER);
    let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return grpc_refusal(
            StatusCode::UNAUTHORIZED,
            tonic::Code::Unauthenticated,
            "the session is not valid; sign in again",
        );
    };
    parts.headers.insert(header::AUTHORIZATION, bearer);
    let request = http::Request::from_parts(parts, body);
    let web = tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), channel);
    match web.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => {
            tracing::warn!(%service, error = %e, "console: the service did not answer");
            grpc_refusal(
                StatusCode::OK,
                tonic::Code::Unavailable,
                "the service is unavailable; try again",
            )
        }
    }
}

/// A gRPC-Web answer with no message: the status in the headers (a "trailers-only"
/// answer), under an HTTP status that says the same to anything that is not a gRPC-Web
/// client.
fn grpc_refusal(status: StatusCode, code: tonic::Code, message: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/grpc-web+proto"),
            (
                header::HeaderName::from_static("grpc-status"),
                grpc_code(code),
            ),
            (header::HeaderName::from_static("grpc-message"), message),
        ],
    )
        .into_response()
}

fn grpc_code(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Unauthenticated => "16",
        tonic::Code::PermissionDenied => "7",
        tonic::Code::Unimplemented => "12",
        _ => "14",
    }
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
