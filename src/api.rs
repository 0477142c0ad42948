//! The JSON API under `/api/v1` (docs/api.md): for receiving facilities' own systems and, later,
//! the web app's pages. Every call names an enrolled operator by bearer token; every search and
//! its outcome is audited before the answer leaves.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::audit::{Action, Audited, NewEntry, Outcome};
use crate::authz::{Role, jst};
use crate::http::{AppState, Authorized};
use crate::limits::{SEARCH_RATE_PER_OPERATOR_MAX, SEARCH_RATE_WINDOW_SECONDS};
use crate::model::wareki::to_wareki;
use crate::model::{MunicipalityCode, PersonId};
use crate::region;
use crate::search::matcher::{Candidate, Grade, Index, Query, Verdict};
use crate::staff::token_hash;

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

/// An enrolled operator, proved by a bearer token. Revoked operators are refused.
pub struct Operator {
    pub id: String,
    pub facility: String,
    pub role: Role,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let found = match token {
            Some(token) => {
                let hash = token_hash(&token);
                state
                    .with_node(move |node, _| node.store.staff_by_token_hash(&hash))
                    .await
                    .map_err(IntoResponse::into_response)?
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())?
            }
            None => None,
        };
        match found.filter(|s| s.revoked_at.is_none()) {
            Some(s) => {
                Ok(Operator { id: s.id, facility: s.facility, role: Role::parse(&s.role).unwrap_or(Role::Support) })
            }
            None => {
                let entry = NewEntry::new("anonymous", Action::Denied, Outcome::Denied, "api: no valid token");
                let status = match state.audit.record(entry).await {
                    Ok(_) => StatusCode::UNAUTHORIZED,
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                };
                Err(ApiError::new(status, "登録された職員のトークン（Authorization: Bearer …）が必要です")
                    .into_response())
            }
        }
    }
}

/// Searches per operator in a sliding window: enough for real work, too few to walk the region.
#[derive(Default)]
pub struct RateLimiter {
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
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

#[derive(Debug, Serialize)]
pub struct CandidateView {
    pub person_id: String,
    pub name: String,
    pub kana: String,
    pub birth_date: String,
    pub birth_date_wareki: String,
    pub sex: &'static str,
    pub municipality: String,
    pub grade: Grade,
    pub score: f64,
    pub agreed: Vec<crate::search::matcher::Field>,
}

#[derive(Debug, Serialize)]
pub struct SearchResponse {
    pub verdict: Verdict,
    pub message: &'static str,
    pub candidates: Vec<CandidateView>,
}

fn message(v: Verdict) -> &'static str {
    match v {
        Verdict::Likely => "この人である可能性が高いです。本人や家族に確かめてから開いてください。",
        Verdict::Ambiguous => {
            "同じくらい当てはまる人が複数います。ほかの情報（住所、家族の名前など）を聞いて絞ってください。"
        }
        Verdict::Possible => "確かな候補はありません。候補は参考です。情報を確かめて検索し直してください。",
        Verdict::NotFound => {
            "当てはまる人は見つかりませんでした。入力を確かめるか、この地域の方ではない可能性があります。"
        }
    }
}

/// `POST /api/v1/search`.
pub async fn search(
    State(state): State<AppState>,
    operator: Operator,
    Authorized(open): Authorized,
    Json(query): Json<Query>,
) -> Result<Audited<Json<SearchResponse>>, ApiError> {
    let audit_entry = |action, outcome, detail: String| {
        let mut e = NewEntry::new(&operator.id, action, outcome, detail);
        e.facility = Some(operator.facility.clone());
        e.role = Some(operator.role);
        e
    };
    let record = |entry: NewEntry| async {
        state
            .audit
            .record(entry)
            .await
            .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "監査ログに書けないため検索できません"))
    };
    if !open.authorization.allows_facility(&operator.facility) {
        record(audit_entry(Action::Denied, Outcome::Denied, "api search: facility not in authorization".into()))
            .await?;
        return Err(ApiError::new(StatusCode::FORBIDDEN, "この事業所は現在の災害認可の対象ではありません"));
    }
    if !state.rate.allow(&operator.id) {
        record(audit_entry(Action::Denied, Outcome::Denied, "api search: rate limit".into())).await?;
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "検索が多すぎます（{SEARCH_RATE_WINDOW_SECONDS}秒に{SEARCH_RATE_PER_OPERATOR_MAX}回まで）。少し待ってください"
            ),
        ));
    }
    let today = state.clock.now().date_naive();
    let summary = serde_json::to_string(&serde_json::json!({
        "name": query.name, "birth_date": query.birth_date, "sex": query.sex,
        "place": query.insurer_or_address, "insurer": query.insurer_number, "insured": query.insured_number,
    }))
    .expect("a query serializes");
    let query_hash = open.query_hash(&summary);
    let searched = {
        let open = open.clone();
        tokio::task::spawn_blocking(move || open.index.search(&query, today))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    let outcome = match searched {
        Ok(o) => o,
        Err(e) => {
            let mut entry = audit_entry(Action::Search, Outcome::Failed, format!("api search refused: {e}"));
            entry.query_hash = Some(query_hash);
            record(entry).await?;
            return Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string()));
        }
    };
    let candidates: Vec<CandidateView> = outcome.candidates.iter().map(|c| view(&open.index, c)).collect();
    let mut entry = audit_entry(
        Action::Search,
        Outcome::Ok,
        format!("api search: {:?}, {} candidates", outcome.verdict, candidates.len()),
    );
    entry.subjects = candidates.iter().filter_map(|c| PersonId::parse(&c.person_id).ok()).collect();
    entry.query_hash = Some(query_hash);
    let receipt = record(entry).await?;
    Ok(Audited::new(
        receipt,
        Json(SearchResponse { verdict: outcome.verdict, message: message(outcome.verdict), candidates }),
    ))
}

fn view(index: &Index, c: &Candidate) -> CandidateView {
    let r = index.shown(c.record);
    CandidateView {
        person_id: r.person_id,
        name: format!("{} {}", r.family_name, r.given_name),
        kana: format!("{} {}", r.family_kana, r.given_kana),
        birth_date: r.birth_date.to_string(),
        birth_date_wareki: to_wareki(r.birth_date).map(|w| w.kanji()).unwrap_or_default(),
        sex: r.sex.kanji(),
        municipality: MunicipalityCode::parse(r.municipality)
            .ok()
            .and_then(region::lookup)
            .map_or_else(|| r.municipality.to_owned(), |m| m.name.clone()),
        grade: c.grade,
        score: (c.score * 10.0).round() / 10.0,
        agreed: c.agreed.clone(),
    }
}

/// `GET /api/v1/status`: what the status page shows, as JSON, for anyone (no personal data).
pub async fn status(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let value = state
        .with_node(|node, s| {
            let now = node.now(s.clock.as_ref()).ok();
            let active = node.check_access(s.clock.as_ref());
            serde_json::json!({
                "node_id": node.info.node_id,
                "now": now.map(jst),
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
