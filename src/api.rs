//! The JSON API under `/api/v1` (docs/api.md), for receiving facilities' own systems: status,
//! search, a person's record and their field events. Every call names an enrolled operator by
//! bearer token; every step goes through `access`, audited before the answer leaves, exactly as
//! the pages do.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::access::{self, EventLine, Found, Operator, PersonView, Refused};
use crate::audit::{Action, Audited, NewEntry, Outcome};
use crate::authz::jst;
use crate::disclose::{FieldEventInput, Purpose};
use crate::http::AppState;
use crate::limits::{SEARCH_RATE_PER_OPERATOR_MAX, SEARCH_RATE_WINDOW_SECONDS};
use crate::search::matcher::Query;
use crate::staff::{LoginError, token_hash};

/// An error as the API returns it: a status and a Japanese message, as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        let status = match r {
            Refused::Closed(_) | Refused::Forbidden(_) => StatusCode::FORBIDDEN,
            Refused::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            Refused::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refused::NotFound(_) => StatusCode::NOT_FOUND,
            Refused::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, r.to_string())
    }
}

/// The token of an `Authorization` header value in the Bearer scheme. The scheme name is
/// case-insensitive (RFC 9110 §11.1) and separated from the credentials by one or more spaces
/// (§11.4, `auth-scheme 1*SP token68`); the token itself is compared exactly, by its hash.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    let token = rest.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// An enrolled operator, proved by a bearer token. Revoked operators, and those whose
/// authorization has ended, are refused (and the refusal logged).
impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .map(str::to_owned);
        let found = match token {
            Some(token) => {
                let hash = token_hash(&token);
                state
                    .with_node(move |node, s| {
                        let staff = node.store.staff_by_token_hash(&hash)?;
                        Ok::<_, crate::store::StoreError>(staff.map(|st| {
                            let allowed = node.staff_may_act(&st, s.clock.as_ref());
                            (st, allowed)
                        }))
                    })
                    .await
                    .map_err(IntoResponse::into_response)?
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())?
            }
            None => None,
        };
        let (operator, status, message) = match found {
            Some((s, Ok(()))) => return Ok(Operator::from(&s)),
            // The authorization this person was enrolled under is over: a closed-data answer.
            Some((s, Err((LoginError::AuthorizationEnded, message)))) => (s.id, StatusCode::FORBIDDEN, message),
            Some((s, Err((_, message)))) => (s.id, StatusCode::UNAUTHORIZED, message),
            None => {
                // Nobody: counted and summarised per address, not written one by one.
                let address = crate::http::client_addr(&parts.extensions);
                let status = if state.throttle.refused_anonymous(address, "API without a valid token") {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::TOO_MANY_REQUESTS
                };
                return Err(ApiError::new(status, "登録された職員のトークン（Authorization: Bearer …）が必要です")
                    .into_response());
            }
        };
        let entry = NewEntry::new(&operator, Action::Denied, Outcome::Denied, "api: token refused");
        let status = match state.audit.record(entry).await {
            Ok(_) => status,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Err(ApiError::new(status, message).into_response())
    }
}

/// Searches per operator in a sliding window: enough for real work, too few to walk the region.
#[derive(Default)]
pub struct RateLimiter {
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// A limiter that goes on counting the searches the audit log shows in the last window:
    /// (operator, seconds ago) per search. A restart does not give anyone a fresh allowance.
    pub fn seeded(searches: impl IntoIterator<Item = (String, f64)>) -> RateLimiter {
        let limiter = RateLimiter::default();
        let window = Duration::from_secs(SEARCH_RATE_WINDOW_SECONDS);
        {
            let mut recent = limiter.recent.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            for (operator, ago) in searches {
                let ago = Duration::from_secs_f64(ago.max(0.0));
                if ago < window
                    && let Some(at) = now.checked_sub(ago)
                {
                    recent.entry(operator).or_default().push_back(at);
                }
            }
            for q in recent.values_mut() {
                q.make_contiguous().sort();
            }
        }
        limiter
    }

    /// Whether `operator` may search now; records the attempt if so.
    pub fn allow(&self, operator: &str) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let q = recent.entry(operator.to_owned()).or_default();
        let window = Duration::from_secs(SEARCH_RATE_WINDOW_SECONDS);
        while q.front().is_some_and(|t| t.elapsed() > window) {
            q.pop_front();
        }
        if q.len() >= SEARCH_RATE_PER_OPERATOR_MAX {
            return false;
        }
        q.push_back(Instant::now());
        true
    }
}

/// `POST /api/v1/search`.
pub async fn search(
    State(state): State<AppState>,
    operator: Operator,
    Json(query): Json<Query>,
) -> Result<Audited<Json<Found>>, ApiError> {
    let open = access::open_data(&state, &operator, "api").await?;
    let (found, receipt) = access::search(&state, &operator, &open, query, "api").await?;
    Ok(Audited::new(receipt, Json(found)))
}

#[derive(Debug, Deserialize)]
pub struct PurposeParams {
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    purpose_text: String,
}

/// A person's record for the purpose given in the query string, audited as a view.
async fn view(
    state: &AppState,
    operator: &Operator,
    open: &std::sync::Arc<crate::gate::OpenData>,
    id: &str,
    p: &PurposeParams,
    channel: &str,
) -> Result<(PersonView, crate::audit::Receipt), ApiError> {
    let id = access::person_id(state, operator, id, channel).await?;
    let purpose = Purpose::parse(&p.purpose, &p.purpose_text)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(access::open_person(state, operator, open, &id, &purpose, Action::View, channel).await?)
}

/// `GET /api/v1/person/{id}?purpose=…`: the record as the operator's role may see it.
pub async fn person(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    UrlQuery(p): UrlQuery<PurposeParams>,
) -> Result<Audited<Json<PersonView>>, ApiError> {
    let open = access::open_data(&state, &operator, "api").await?;
    let (view, receipt) = view(&state, &operator, &open, &id, &p, "api").await?;
    Ok(Audited::new(receipt, Json(view)))
}

/// `GET /api/v1/person/{id}/events?purpose=…`: whereabouts and handover notes, newest first.
pub async fn events(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    UrlQuery(p): UrlQuery<PurposeParams>,
) -> Result<Audited<Json<Vec<EventLine>>>, ApiError> {
    let open = access::open_data(&state, &operator, "api").await?;
    let (view, receipt) = view(&state, &operator, &open, &id, &p, "api events").await?;
    Ok(Audited::new(receipt, Json(view.events)))
}

/// `POST /api/v1/person/{id}/events`: records where the person is now.
pub async fn add_event(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
    Json(e): Json<FieldEventInput>,
) -> Result<Audited<(StatusCode, Json<serde_json::Value>)>, ApiError> {
    let id = access::person_id(&state, &operator, &id, "api").await?;
    let open = access::open_data(&state, &operator, "api").await?;
    let event = e.parse().map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let (seq, receipt) = access::record_event(&state, &operator, &open, &id, event, "api").await?;
    Ok(Audited::new(receipt, (StatusCode::CREATED, Json(serde_json::json!({ "seq": seq })))))
}

/// `GET /api/v1/status`: what the status page shows, as JSON, for anyone (no personal data).
pub async fn status(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let value = state
        .with_node(|node, s| {
            let now = node.now(s.clock.as_ref()).ok();
            let active = node.check_access(s.clock.as_ref());
            let snapshot = node.current_manifest().ok().flatten().map(|(_, m)| {
                serde_json::json!({ "version": m.snapshot_version, "created_at": jst(m.created_at), "synthetic": m.synthetic, "record_count": m.record_count })
            });
            serde_json::json!({
                "node_id": node.info.node_id,
                "now": now.map(jst),
                "url": s.url,
                "fingerprint": s.fingerprint,
                "snapshot": snapshot,
                "link": "none",
                "authorization": match active {
                    Ok(row) => serde_json::json!({ "active": true, "disaster": row.disaster, "not_after": jst(row.not_after), "drill": row.drill }),
                    Err(denied) => serde_json::json!({ "active": false, "reason": denied.to_string() }),
                },
            })
        })
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "内部エラー"))?;
    Ok(Json(value))
}
