//! The HTTP surface: the router, security headers, request logging and the one error type that
//! turns failures into safe responses. The only module that uses axum.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tracing::Instrument;

use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::authz::jst;
use crate::clock::SharedClock;
use crate::gate::{Denied, Gate};
use crate::keys::NodeSecretKey;
use crate::limits::REQUEST_BODY_BYTES_MAX;
use crate::limits::TIME_TICK_SECONDS;
use crate::node::NodeError;
use crate::node::{Node, describe_region};
use crate::region;
use crate::views::{self, AuthorizationView, SnapshotView, StatusView};

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    /// The node and its store. Only touched inside `spawn_blocking`.
    pub node: Arc<Mutex<Node>>,
    /// The only way to decrypted records.
    pub gate: Arc<Gate>,
    pub secret: Arc<NodeSecretKey>,
    /// Every access is written here, durably, before its response leaves.
    pub audit: Arc<AuditLog>,
    /// The same chain writer, for a coordinator's change: the change and its entry are written
    /// in one transaction on the node's own connection (`ChainWriter::commit`), taking turns
    /// with `audit` through the database's write lock.
    pub writer: crate::audit::ChainWriter,
    pub clock: SharedClock,
    pub fingerprint: String,
    /// The node's URL as staff open it (`https://…/`).
    pub url: String,
    /// The node holds a synthetic snapshot (a drill or the demo): every page shows the banner.
    pub drill: Arc<AtomicBool>,
    /// Searches per operator, to stop anyone walking the region.
    pub rate: Arc<crate::api::RateLimiter>,
    /// What clients that have not proved who they are may cost: sign-in attempts, the Argon2
    /// queue, and refused requests (summarised in the audit log).
    pub throttle: Arc<crate::throttle::Throttle>,
}

/// The one way an answer with personal data leaves: with its durable audit entry's number in
/// `x-audit-seq` (`audit::Audited` can only be made from a `Receipt`).
impl<T: IntoResponse> IntoResponse for crate::audit::Audited<T> {
    fn into_response(self) -> Response {
        let (receipt, body) = self.into_parts();
        let mut response = body.into_response();
        response.headers_mut().insert("x-audit-seq", receipt.seq().into());
        response
    }
}

tokio::task_local! {
    /// Whether the page being answered must show the drill banner; set per request from
    /// `AppState::drill`, read by error pages that have no state at hand.
    static DRILL: bool;
}

/// The address of the client that sent a request (by its extensions), as `server::run` notes it on every
/// request. A request that did not come through `server::run` (a router called directly in a
/// test) counts as the unspecified address.
pub fn client_addr(extensions: &axum::http::Extensions) -> std::net::IpAddr {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The client address of a request, as an extractor (see `client_addr`).
pub struct ClientAddr(pub std::net::IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.extensions)))
    }
}

/// Whether the current request's pages show the drill banner.
pub fn drill_now() -> bool {
    DRILL.try_with(|d| *d).unwrap_or(false)
}

impl AppState {
    /// Runs `f` with the node locked, off the async runtime.
    pub async fn with_node<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, &AppState) -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut node = state.node.lock().map_err(|_| AppError::Internal("node lock poisoned".into()))?;
            Ok(f(&mut node, &state))
        })
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
    }

    /// The open data, or why it is closed: checked under the node's lock, and opened (when it
    /// must be: an authorization imported, a snapshot switched) outside it, so that nobody who
    /// does not need the data waits the second the opening takes.
    pub async fn open_data(&self) -> Result<Result<Arc<crate::gate::OpenData>, Denied>, AppError> {
        let step = self.with_node(|node, s| s.gate.check(node, s.clock.as_ref())).await?;
        match step {
            Ok(crate::gate::Step::Ready(data)) => Ok(Ok(data)),
            Err(denied) => Ok(Err(denied)),
            Ok(crate::gate::Step::Open(plan)) => {
                let state = self.clone();
                tokio::task::spawn_blocking(move || state.gate.open(plan, &state.secret))
                    .await
                    .map_err(|e| AppError::Internal(e.to_string()))
            }
        }
    }

    /// `with_node` for work that can fail: a failure is internal (logged, a safe page).
    pub async fn try_with_node<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, &AppState) -> Result<T, E> + Send + 'static,
    ) -> Result<T, AppError> {
        self.with_node(f).await?.map_err(|e| AppError::Internal(e.to_string()))
    }
}

/// Every few seconds: note the node's running time as trusted, and close the authorization at
/// its not-after (dropping the open data), so expiry does not wait for the next request.
pub async fn keep_time(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(TIME_TICK_SECONDS));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let noted = state
            .with_node(|node, s| {
                if let Err(e) = node.note_running_time(s.clock.as_ref()) {
                    tracing::error!(error = %e, "cannot record trusted time");
                }
            })
            .await;
        // Checking drops the data at not-after; opening it here too means the first search
        // after an import does not wait for it.
        if noted.is_ok()
            && let Ok(Err(denied)) = state.open_data().await
        {
            tracing::debug!(%denied, "data closed");
        }
        write_refusal_summaries(&state, false).await;
    }
}

/// Writes the summaries of requests refused for having no session or token that are due (all
/// of them with `force`, at shutdown). A failure is logged: these record no access to data.
pub async fn write_refusal_summaries(state: &AppState, force: bool) {
    for entry in state.throttle.take_summaries(force) {
        if let Err(e) = state.audit.record(entry).await {
            tracing::error!(error = %e, "cannot write a summary of refused requests");
        }
    }
}

/// The one error type at the HTTP edge: the client gets a safe Japanese page, the detail is
/// logged once, inside the request span.
#[derive(Debug)]
pub enum AppError {
    Internal(String),
    /// The data may not be read now: 403 with the reason and what to do (503 when the clock is
    /// behind, which is a fault of the node rather than a refusal).
    Denied(Denied),
    /// The audit entry could not be written: nothing is served (fail closed).
    AuditUnavailable(String),
}

/// So that page handlers, which answer `Result<Response, Response>`, can use `?` on these.
impl From<AppError> for Response {
    fn from(e: AppError) -> Response {
        e.into_response()
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                let page = views::error_page(
                    "内部エラー",
                    "処理中に問題が起きました。少し待ってからやり直してください。続くときはコーディネーターに連絡してください。",
                    &chrome(),
                );
                (StatusCode::INTERNAL_SERVER_ERROR, Html(page.into_string())).into_response()
            }
            AppError::AuditUnavailable(detail) => {
                tracing::error!(%detail, "audit write failed; request refused");
                let page = views::error_page(
                    "一時的に利用できません",
                    "アクセスの記録（監査ログ）を書けないため、情報を出せません。コーディネーターに連絡してください。ディスクの空きや故障を確かめる必要があります。",
                    &chrome(),
                );
                (StatusCode::SERVICE_UNAVAILABLE, Html(page.into_string())).into_response()
            }
            AppError::Denied(denied) => {
                let status = match denied {
                    Denied::ClockBehind { .. } | Denied::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::FORBIDDEN,
                };
                tracing::info!(%denied, "data access refused");
                let page = views::error_page("検索できません", &denied.to_string(), &chrome());
                (status, Html(page.into_string())).into_response()
            }
        }
    }
}

/// Error pages outside a handler's reach: the drill banner, nobody signed in.
fn chrome() -> views::Chrome<'static> {
    views::Chrome { drill: drill_now(), user: None }
}

pub fn router(state: AppState) -> Router {
    use crate::{api, web};
    use axum::routing::post;
    Router::new()
        .route("/", get(status))
        .route("/login", get(web::login_form).post(web::login))
        .route("/logout", post(web::logout))
        .route("/pin", get(web::pin_form).post(web::set_pin))
        .route("/search", get(web::search_form).post(web::search))
        .route("/person/{id}", get(web::person))
        .route("/person/{id}/purpose", post(web::state_purpose))
        .route("/person/{id}/events", post(web::add_event))
        .route("/person/{id}/handover", get(web::handover))
        .route("/manage", get(web::manage))
        .route("/manage/staff", post(web::enrol))
        .route("/manage/staff/{id}/revoke", post(web::revoke))
        .route("/manage/authz/import", post(web::import_authorization))
        .route("/manage/authz/close", post(web::close_authorization))
        .route("/manage/clock", post(web::move_clock))
        .route("/manage/audit", get(web::audit_log))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/search", post(api::search))
        .route("/api/v1/person/{id}", get(api::person))
        .route("/api/v1/person/{id}/events", get(api::events).post(api::add_event))
        .route("/static/style.css", get(stylesheet))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .layer(middleware::from_fn(read_body_in_time))
        .layer(middleware::from_fn_with_state(state.clone(), drill_banner))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// Reads the request body in full before anything else, within `REQUEST_BODY_SECONDS_MAX`: a
/// body trickled a byte at a time is answered 408 and frees its request slot, and no handler
/// ever waits on a client. Bodies are small (`REQUEST_BODY_BYTES_MAX`; larger is 413).
pub async fn read_body_in_time(request: Request, next: Next) -> Response {
    use crate::limits::REQUEST_BODY_SECONDS_MAX;
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(REQUEST_BODY_SECONDS_MAX),
        axum::body::to_bytes(body, REQUEST_BODY_BYTES_MAX),
    )
    .await;
    let refuse = |status: StatusCode, message: &str| {
        let page = views::error_page("送信できませんでした", message, &chrome());
        (status, Html(page.into_string())).into_response()
    };
    match read {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(_)) => refuse(StatusCode::PAYLOAD_TOO_LARGE, "送信内容が大きすぎるか、途中で切れました。"),
        Err(_) => {
            tracing::debug!("request body not received in time");
            refuse(
                StatusCode::REQUEST_TIMEOUT,
                "送信に時間がかかりすぎました。電波のよい場所で、もう一度送ってください。",
            )
        }
    }
}

async fn drill_banner(State(state): State<AppState>, request: Request, next: Next) -> Response {
    DRILL.scope(state.drill.load(Ordering::Relaxed), next.run(request)).await
}

async fn status(
    State(state): State<AppState>,
    jar: axum_extra::extract::CookieJar,
    signed: Option<crate::web::Signed>,
) -> Result<(Option<axum_extra::extract::CookieJar>, Html<String>), AppError> {
    let forget = crate::web::forget_stale_session(&jar, signed.as_ref());
    let bar = signed.as_ref().map(crate::web::Signed::bar);
    let open = state.open_data().await?;
    let view = state
        .with_node(move |node, s| -> Result<StatusView, AppError> {
            let internal = |e: NodeError| AppError::Internal(e.to_string());
            let now = node.now(s.clock.as_ref()).map_err(internal)?;
            let current = node.current_manifest().map_err(internal)?;
            let authorization = match open {
                Ok(open) => AuthorizationView::Active {
                    disaster: open.authorization.disaster.clone(),
                    from: jst(open.authorization.not_before()),
                    until: jst(open.authorization.not_after()),
                    left: views::duration_words(open.authorization.not_after() - now),
                    municipalities: region::names(&open.authorization.municipalities),
                    drill: open.authorization.drill,
                    records_open: open.index.len(),
                    nodes: open.authorization.nodes.len(),
                },
                Err(denied) => AuthorizationView::Inactive {
                    clock_behind: matches!(denied, Denied::ClockBehind { .. }),
                    message: denied.to_string(),
                },
            };
            Ok(StatusView {
                node_id: node.info.node_id.clone(),
                region: describe_region(&node.info.region),
                snapshot: current.map(|(held, m)| SnapshotView {
                    version: m.snapshot_version,
                    created_at: jst(m.created_at),
                    imported_at: jst(held.imported_at),
                    age: format!("{}前", views::duration_words(now - m.created_at)),
                    record_count: m.record_count,
                    municipalities: region::names(&m.municipalities),
                    synthetic: m.synthetic,
                    snapshot_id: m.snapshot_id,
                }),
                authorization,
                fingerprint: s.fingerprint.clone(),
                url: s.url.clone(),
                now: jst(now),
                link: "中央との接続なし（オフラインで動作中）".to_owned(),
                unsent_audit: node
                    .store
                    .audit_head()
                    .map_err(|e| AppError::Internal(e.to_string()))?
                    .map_or(0, |(seq, _)| seq),
            })
        })
        .await??;
    let chrome = views::Chrome { drill: drill_now(), user: bar.as_ref() };
    Ok((forget, Html(views::status(&view, &chrome).into_string())))
}

async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../static/style.css"))
}

async fn not_found() -> impl IntoResponse {
    let page = views::error_page(
        "ページがありません",
        "アドレスを確かめてください。トップページに戻るには / を開いてください。",
        &chrome(),
    );
    (StatusCode::NOT_FOUND, Html(page.into_string()))
}

/// The answer when the server already has as many requests in hand as it takes
/// (`limits::REQUESTS_IN_FLIGHT_MAX`; `server::run` sheds the rest): 503 at once, with the
/// security headers, asking staff to retry in a moment.
pub fn overloaded() -> Response {
    let page = views::error_page(
        "混み合っています",
        "ただいま処理が混み合っています。数秒待ってからもう一度お試しください。",
        &chrome(),
    );
    let mut response =
        (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "2")], Html(page.into_string())).into_response();
    set_security_headers(response.headers_mut());
    response
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    set_security_headers(response.headers_mut());
    response
}

fn set_security_headers(h: &mut axum::http::HeaderMap) {
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "permissions-policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()");
    set(h, "x-frame-options", "DENY");
    set(h, "strict-transport-security", "max-age=31536000");
    set(h, "cache-control", "no-store");
}

/// One span per request, named by the matched route (never the raw path, which may one day
/// carry identifiers).
async fn request_span(request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "(unmatched)".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!("request", %method, %route);
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        tracing::info!(status = response.status().as_u16(), millis = started.elapsed().as_millis() as u64, "served");
        response
    }
    .instrument(span)
    .await
}
