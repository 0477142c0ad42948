//! The HTTP surface: the router, security headers, request logging and the one error type that
//! turns failures into safe responses. The only module that uses axum.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, FixedOffset, Utc};
use tracing::Instrument;

use crate::clock::SharedClock;
use crate::limits::REQUEST_BODY_BYTES_MAX;
use crate::node::{Node, describe_region};
use crate::region;
use crate::views::{self, SnapshotView, StatusView};

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    /// The node and its store. Only touched inside `spawn_blocking`.
    pub node: Arc<Mutex<Node>>,
    pub clock: SharedClock,
    pub fingerprint: String,
}

/// The one error type at the HTTP edge: the client gets a safe Japanese page, the detail is
/// logged once, inside the request span.
#[derive(Debug)]
pub enum AppError {
    Internal(String),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                let page = views::error_page(
                    "内部エラー",
                    "処理中に問題が起きました。少し待ってからやり直してください。続くときはコーディネーターに連絡してください。",
                );
                (StatusCode::INTERNAL_SERVER_ERROR, Html(page.into_string())).into_response()
            }
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/static/style.css", get(stylesheet))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// Japan Standard Time, for everything shown to people.
pub fn jst(t: DateTime<Utc>) -> String {
    let offset = FixedOffset::east_opt(9 * 3600).expect("+09:00 is a valid offset");
    t.with_timezone(&offset)
        .format("%Y-%m-%d %H:%M:%S（日本時間）")
        .to_string()
}

async fn status(State(state): State<AppState>) -> Result<Html<String>, AppError> {
    let node = state.node.clone();
    let now = state.clock.now();
    let fingerprint = state.fingerprint.clone();
    let view = tokio::task::spawn_blocking(move || -> Result<StatusView, AppError> {
        let node = node
            .lock()
            .map_err(|_| AppError::Internal("node lock poisoned".into()))?;
        let current = node
            .current_manifest()
            .map_err(|e| AppError::Internal(e.to_string()))?;
        Ok(StatusView {
            node_id: node.info.node_id.clone(),
            region: describe_region(&node.info.region),
            snapshot: current.map(|(held, m)| SnapshotView {
                version: m.snapshot_version,
                created_at: jst(m.created_at),
                imported_at: jst(held.imported_at),
                record_count: m.record_count,
                municipalities: region::names(&m.municipalities),
                synthetic: m.synthetic,
                snapshot_id: m.snapshot_id,
            }),
            fingerprint,
            now: jst(now),
        })
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok(Html(views::status(&view).into_string()))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../static/style.css"),
    )
}

async fn not_found() -> impl IntoResponse {
    let page = views::error_page(
        "ページがありません",
        "アドレスを確かめてください。トップページに戻るには / を開いてください。",
    );
    (StatusCode::NOT_FOUND, Html(page.into_string()))
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
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
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "cache-control", "no-store");
    response
}

/// One span per request, named by the matched route (never the raw path, which may one day
/// carry identifiers).
async fn request_span(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(unmatched)".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!("request", %method, %route);
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        tracing::info!(
            status = response.status().as_u16(),
            millis = started.elapsed().as_millis() as u64,
            "served"
        );
        response
    }
    .instrument(span)
    .await
}
