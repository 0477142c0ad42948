//! What staff do with personal data, each step audited before its answer exists: search, open a
//! person's record (with a purpose), print the handover sheet, record whereabouts. The web pages
//! (`web`) and the JSON API (`api`) both call these, so the two cannot drift apart in what they
//! show or what they log.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::audit::{Action, NewEntry, Outcome, Receipt};
use crate::authz::Role;
use crate::disclose::{CandidateView, Disclosed, FieldEvent, Purpose, candidate_view, disclose};
use crate::gate::{Denied, OpenData};
use crate::http::AppState;
use crate::limits::{SEARCH_FIELD_CHARS_MAX, SEARCH_RATE_PER_OPERATOR_MAX, SEARCH_RATE_WINDOW_SECONDS};
use crate::model::PersonId;
use crate::search::matcher::{Query, QueryError, Verdict};
use crate::store::StaffRow;

/// Someone enrolled on this node, signed in (web) or holding a token (API).
#[derive(Debug, Clone)]
pub struct Operator {
    pub id: String,
    pub name: String,
    /// 事業所番号; empty for the node's own coordinator.
    pub facility: String,
    pub role: Role,
}

impl From<&StaffRow> for Operator {
    fn from(s: &StaffRow) -> Operator {
        Operator {
            id: s.id.clone(),
            name: s.name.clone(),
            facility: s.facility.clone(),
            // The store's CHECK constraint allows only the three role names.
            role: Role::parse(&s.role).unwrap_or(Role::Support),
        }
    }
}

impl Operator {
    /// An audit entry made by this operator.
    pub fn entry(&self, action: Action, outcome: Outcome, detail: impl Into<String>) -> NewEntry {
        let mut e = NewEntry::new(&self.id, action, outcome, detail);
        e.facility = (!self.facility.is_empty()).then(|| self.facility.clone());
        e.role = Some(self.role);
        e
    }
}

/// Why a step was refused; each carries the Japanese message staff see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The data is closed: no authorization in force, ended, or not begun.
    #[error("{0}")]
    Closed(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooMany(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The audit log or the snapshot cannot be used: nothing is served.
    #[error("{0}")]
    Unavailable(String),
}

/// A fault of the node itself (its disk, its files, a task that died): staff get what failed in
/// their words and an incident number to give the coordinator; the detail goes only to the log,
/// under that number. Internal error text never reaches a page or an answer.
fn fault(what: &str, detail: impl std::fmt::Display) -> Refused {
    let incident = crate::incident::record(what, detail);
    Refused::Unavailable(format!("{what}。コーディネーターに連絡してください（障害番号 {incident}）"))
}

async fn record(state: &AppState, entry: NewEntry) -> Result<Receipt, Refused> {
    // A refusal beyond the operator's allowance is answered 429 and counted in a summary
    // (`throttle`), so refused requests cannot grow the log at the disk's speed.
    if entry.outcome != Outcome::Ok && !state.throttle.refused_operator(&entry.operator) {
        return Err(Refused::TooMany("断られる操作が続いています。1分ほど待ってから、やり直してください".into()));
    }
    state.audit.record(entry).await.map_err(|e| {
        tracing::error!(error = %e, "audit write failed; request refused");
        Refused::Unavailable(
            "アクセスの記録（監査ログ）を書けないため、情報を出せません。コーディネーターに連絡してください".into(),
        )
    })
}

/// Records the entry of an access to personal data, stamped against the window of the
/// authorization that opened it: an entry whose own time is at or after not-after is written as
/// refused, and nothing is answered (the window is checked at the moment of the entry, not only
/// when the request began).
async fn record_in_window(state: &AppState, open: &OpenData, mut entry: NewEntry) -> Result<Receipt, Refused> {
    entry.valid_until = Some(open.authorization.not_after());
    let receipt = record(state, entry).await?;
    if receipt.late() {
        return Err(Refused::Closed(format!(
            "災害認可（{}）の期間が終わりました（{} まで）。必要なら中央に延長を依頼してください",
            open.authorization.disaster,
            crate::authz::jst(open.authorization.not_after())
        )));
    }
    Ok(receipt)
}

/// The open data for this operator, or why not (logged with who asked). The only way handlers
/// reach `OpenData`, which only `Gate::access` makes.
pub async fn open_data(state: &AppState, op: &Operator, channel: &str) -> Result<Arc<OpenData>, Refused> {
    let result = state.open_data().await.map_err(|e| fault("データを開けません", format!("{e:?}")))?;
    let denied = match result {
        Ok(open) => return Ok(open),
        Err(denied) => denied,
    };
    record(state, op.entry(Action::Denied, Outcome::Denied, format!("{channel}: {denied}"))).await?;
    Err(match denied {
        Denied::ClockBehind { .. } | Denied::Unavailable(_) => Refused::Unavailable(denied.to_string()),
        _ => Refused::Closed(denied.to_string()),
    })
}

/// Refuses (and logs) an operator whose facility the authorization in force does not cover.
async fn check_facility(state: &AppState, op: &Operator, open: &OpenData, what: &str) -> Result<(), Refused> {
    let covered =
        (op.facility.is_empty() && op.role == Role::Coordinator) || open.authorization.allows_facility(&op.facility);
    if covered {
        return Ok(());
    }
    record(state, op.entry(Action::Denied, Outcome::Denied, format!("{what}: facility not in authorization"))).await?;
    Err(Refused::Forbidden("この事業所は現在の災害認可の対象ではありません".into()))
}

/// What a search found, as staff see it.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub verdict: Verdict,
    pub message: &'static str,
    pub candidates: Vec<CandidateView>,
}

/// A search, rate-limited per operator and audited with the candidates' ids and a keyed hash of
/// the query (never the query).
pub async fn search(
    state: &AppState,
    op: &Operator,
    open: &Arc<OpenData>,
    query: Query,
    channel: &str,
) -> Result<(Found, Receipt), Refused> {
    check_facility(state, op, open, channel).await?;
    if !state.rate.allow(&op.id) {
        record(state, op.entry(Action::Denied, Outcome::Denied, format!("{channel} search: rate limit"))).await?;
        return Err(Refused::TooMany(format!(
            "検索が多すぎます（{SEARCH_RATE_WINDOW_SECONDS}秒に{SEARCH_RATE_PER_OPERATOR_MAX}回まで）。少し待ってください"
        )));
    }
    let typed = [
        &query.name,
        &query.birth_date,
        &query.sex,
        &query.insurer_or_address,
        &query.insurer_number,
        &query.insured_number,
    ];
    if typed.iter().copied().flatten().any(|t| t.chars().count() > SEARCH_FIELD_CHARS_MAX) {
        record(state, op.entry(Action::Search, Outcome::Failed, format!("{channel} search refused: field too long")))
            .await?;
        return Err(Refused::BadRequest(format!(
            "入力が長すぎます。各項目は{SEARCH_FIELD_CHARS_MAX}文字までにしてください"
        )));
    }
    if let Some(bad) = typed.into_iter().flatten().find_map(|t| crate::model::text::clean(t, false).err()) {
        record(
            state,
            op.entry(Action::Search, Outcome::Failed, format!("{channel} search refused: control character")),
        )
        .await?;
        return Err(Refused::BadRequest(bad.to_string()));
    }
    let today = node_today(state).await?;
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
            .map_err(|e| fault("検索できません", e))?
    };
    let outcome = match searched {
        Ok(o) => o,
        Err(e) => {
            // The kind of refusal only: the message quotes what was typed, which stays out of the log.
            let kind = match e {
                QueryError::NotEnough => "not enough fields",
                QueryError::CardIncomplete => "card route incomplete",
                QueryError::Date(_) => "unreadable birth date",
                QueryError::Sex(_) => "unreadable sex",
            };
            let mut entry = op.entry(Action::Search, Outcome::Failed, format!("{channel} search refused: {kind}"));
            entry.query_hash = Some(query_hash);
            record(state, entry).await?;
            return Err(Refused::BadRequest(e.to_string()));
        }
    };
    // The index holds only the authorization's municipalities; each candidate is checked again.
    let candidates: Vec<CandidateView> = outcome
        .candidates
        .iter()
        .filter(|c| open.authorization.covers_municipality(open.index.shown(c.record).municipality))
        .map(|c| candidate_view(&open.index, c))
        .collect();
    let mut entry = op.entry(
        Action::Search,
        Outcome::Ok,
        format!("{channel} search: {:?}, {} candidates", outcome.verdict, candidates.len()),
    );
    entry.subjects = candidates.iter().filter_map(|c| PersonId::parse(&c.person_id).ok()).collect();
    entry.query_hash = Some(query_hash);
    let receipt = record_in_window(state, open, entry).await?;
    let found =
        Found { verdict: outcome.verdict, message: crate::disclose::verdict_message(outcome.verdict), candidates };
    Ok((found, receipt))
}

/// A field event as shown: who recorded where the person was, when.
#[derive(Debug, Clone, Serialize)]
pub struct EventLine {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub staff_id: String,
    pub facility: String,
    #[serde(flatten)]
    pub event: FieldEvent,
}

/// A person's record as the operator's role may see it, with their field events.
#[derive(Debug, Clone, Serialize)]
pub struct PersonView {
    pub purpose: String,
    pub record: Disclosed,
    pub events: Vec<EventLine>,
    /// Events sealed under an earlier snapshot's data key: not readable now.
    pub unreadable_events: usize,
}

/// A person id from a URL, parsed before anything else is done with it; a malformed one is
/// refused and logged like any other miss. Handlers take only the typed id from here on, so no
/// request text reaches a page, a form action or the store.
pub async fn person_id(state: &AppState, op: &Operator, raw: &str, channel: &str) -> Result<PersonId, Refused> {
    match PersonId::parse(raw) {
        Ok(id) => Ok(id),
        Err(_) => {
            record(state, op.entry(Action::Denied, Outcome::Failed, format!("{channel}: malformed person id"))).await?;
            Err(Refused::NotFound("この個人IDの記録はありません".into()))
        }
    }
}

/// Today in Japan by the node's time (the clock plus any forward correction): ages, and whether
/// a certification is in force, are counted on the date the staff live in.
async fn node_today(state: &AppState) -> Result<chrono::NaiveDate, Refused> {
    let now = state
        .with_node(|node, s| node.now(s.clock.as_ref()).map_err(|e| e.to_string()))
        .await
        .map_err(|e| fault("ノードの時刻を読めません", format!("{e:?}")))?
        .map_err(|e| fault("ノードの時刻を読めません", e))?;
    Ok((now + chrono::Duration::hours(9)).date_naive())
}

/// Opens one person's record for `purpose`, as `action` (a view or a print), audited with the
/// person and the purpose before anything is returned.
pub async fn open_person(
    state: &AppState,
    op: &Operator,
    open: &Arc<OpenData>,
    id: &PersonId,
    purpose: &Purpose,
    action: Action,
    channel: &str,
) -> Result<(PersonView, Receipt), Refused> {
    check_facility(state, op, open, channel).await?;
    let record = {
        let (open, id) = (open.clone(), id.clone());
        tokio::task::spawn_blocking(move || open.record(id.as_str())).await.map_err(|e| fault("記録を読めません", e))?
    };
    let record = match record {
        Ok(Some(r)) => r,
        Ok(None) => {
            record_entry(
                state,
                op,
                Action::Denied,
                Outcome::Failed,
                id,
                Some(purpose),
                &format!("{channel}: no such person"),
            )
            .await?;
            return Err(Refused::NotFound("この個人IDの記録はこの地域のデータにありません".into()));
        }
        Err(e) => return Err(fault("記録を読めません", e)),
    };
    let sections = open.authorization.sections_for(op.role).to_vec();
    let today = node_today(state).await?;
    let disclosed = disclose(&record, &sections, today);
    drop(record);
    let rows = {
        let id = id.clone();
        state
            .with_node(move |node, _| node.store.field_events(id.as_str()))
            .await
            .map_err(|e| fault("居場所の記録を読めません", format!("{e:?}")))?
            .map_err(|e| fault("居場所の記録を読めません", e))?
    };
    let mut events = Vec::new();
    let mut unreadable = 0;
    for row in &rows {
        match open.open_event(row) {
            Some(event) => events.push(EventLine {
                seq: row.seq,
                at: row.at,
                staff_id: row.staff_id.clone(),
                facility: row.facility.clone(),
                event,
            }),
            None => unreadable += 1,
        }
    }
    let detail = format!("{channel}: sections {}", disclosed.sections.join(","));
    let mut entry = op.entry(action, Outcome::Ok, detail);
    entry.subjects = vec![id.clone()];
    entry.purpose = Some(purpose.label());
    let receipt = record_in_window(state, open, entry).await?;
    Ok((PersonView { purpose: purpose.label(), record: disclosed, events, unreadable_events: unreadable }, receipt))
}

async fn record_entry(
    state: &AppState,
    op: &Operator,
    action: Action,
    outcome: Outcome,
    id: &PersonId,
    purpose: Option<&Purpose>,
    detail: &str,
) -> Result<Receipt, Refused> {
    let mut entry = op.entry(action, outcome, detail);
    entry.subjects = vec![id.clone()];
    entry.purpose = purpose.map(Purpose::label);
    record(state, entry).await
}

/// Records where a person is now (and a handover note), sealed under the data key, audited.
pub async fn record_event(
    state: &AppState,
    op: &Operator,
    open: &Arc<OpenData>,
    id: &PersonId,
    event: FieldEvent,
    channel: &str,
) -> Result<(i64, Receipt), Refused> {
    check_facility(state, op, open, channel).await?;
    if open.index.position_of(id.as_str()).is_none() {
        record_entry(state, op, Action::Denied, Outcome::Failed, id, None, &format!("{channel}: no such person"))
            .await?;
        return Err(Refused::NotFound("この個人IDの記録はこの地域のデータにありません".into()));
    }
    // The entry first: an event on disk always has its entry. If storing then fails, a second
    // entry says so.
    let mut entry = op.entry(Action::FieldEvent, Outcome::Ok, format!("{channel}: field event"));
    entry.subjects = vec![id.clone()];
    let receipt = record_in_window(state, open, entry).await?;
    let (open2, op2, id2) = (open.clone(), op.clone(), id.clone());
    let stored = state
        .with_node(move |node, s| -> Result<i64, String> {
            let at = node.now(s.clock.as_ref()).map_err(|e| e.to_string())?;
            let row = open2.seal_event(&event, id2.as_str(), &op2.id, &op2.facility, at);
            node.store.add_field_event(&row).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("{e:?}"))
        .and_then(|r| r);
    match stored {
        Ok(seq) => Ok((seq, receipt)),
        Err(e) => {
            record_entry(state, op, Action::FieldEvent, Outcome::Failed, id, None, &format!("{channel}: not stored"))
                .await?;
            Err(fault("居場所を保存できません", e))
        }
    }
}
