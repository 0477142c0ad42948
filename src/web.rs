//! The web app's pages: sign-in, search, the person page, the handover sheet, and the
//! coordinator's pages. Sessions live in the store by the SHA-256 of a random cookie (Secure,
//! HttpOnly, SameSite=Strict); every form carries the session's CSRF token; personal data goes
//! through `access`, audited, exactly as the API's does.

use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequestParts, Multipart, Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use maud::Markup;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::access::{self, Operator, Refused};
use crate::audit::{Action, Audited, NewEntry, Outcome};
use crate::authz::{Role, jst};
use crate::disclose::{FieldEventInput, Purpose};
use crate::gate::OpenData;
use crate::http::{AppError, AppState, drill_now};
use crate::limits::{AUDIT_PAGE_ENTRIES, LOGIN_FAILURES_MAX, LOGIN_LOCKOUT_SECONDS};
use crate::staff::{self, LoginError, SessionAge, SignedIn};
use crate::store::{SessionRow, StaffRow};
use crate::views::{self, Chrome, UserBar};

pub const SESSION_COOKIE: &str = "kf_session";
/// Double-submit token for the sign-in form, before there is a session.
const LOGIN_CSRF_COOKIE: &str = "kf_login";

/// A cookie only this site's HTTPS pages send back. No expiry date: it ends with the browser,
/// and the server ends the session after idling or a shift in any case.
fn cookie(name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value)).path("/").secure(true).http_only(true).same_site(SameSite::Strict).build()
}

fn html(page: Markup) -> Html<String> {
    Html(page.into_string())
}

/// A signed-in person: their operator identity and session.
pub struct Signed {
    pub op: Operator,
    pub session: SessionRow,
    /// Signed in with the one-time code and has not set a PIN yet: only `/pin` is open.
    pub must_set_secret: bool,
}

impl Signed {
    pub fn bar(&self) -> UserBar {
        UserBar { name: self.op.name.clone(), role: self.op.role, csrf: self.session.csrf.clone() }
    }

    /// Refuses a form whose CSRF token is not this session's (logged).
    async fn check_csrf(&self, state: &AppState, token: &str) -> Result<(), Response> {
        if bool::from(self.session.csrf.as_bytes().ct_eq(token.as_bytes())) {
            return Ok(());
        }
        let _ = state
            .audit
            .record(self.op.entry(Action::Denied, Outcome::Denied, "web: CSRF token missing or wrong"))
            .await;
        Err(page_error(
            StatusCode::FORBIDDEN,
            "送信できませんでした",
            "フォームの確認用の値が合いません。ページを開き直してから、もう一度送ってください。",
            Some(&self.bar()),
        ))
    }
}

fn page_error(status: StatusCode, title: &str, message: &str, user: Option<&UserBar>) -> Response {
    let chrome = Chrome { drill: drill_now(), user };
    (status, html(views::error_page(title, message, &chrome))).into_response()
}

/// Why a request has no usable session.
enum NoSession {
    /// No cookie, an unknown one, or one that timed out: sign in (again).
    SignIn,
    /// The person was revoked, or their authorization ended.
    Ended(Box<StaffRow>, LoginError),
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        let token = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned());
        let route = parts.extensions.get::<axum::extract::MatchedPath>().map_or("", |p| p.as_str()).to_owned();
        let result = match token {
            None => Err(NoSession::SignIn),
            Some(token) => state
                .with_node(move |node, s| -> Result<Result<Signed, NoSession>, String> {
                    let now = node.now(s.clock.as_ref()).map_err(|e| e.to_string())?;
                    let hash = staff::token_hash(&token);
                    let store = &node.store;
                    let Some(session) = store.session(&hash).map_err(|e| e.to_string())? else {
                        return Ok(Err(NoSession::SignIn));
                    };
                    let age = staff::session_age(&session, now);
                    let staff = store.staff(&session.staff_id).map_err(|e| e.to_string())?;
                    let Some(staff) = staff.filter(|_| age != SessionAge::Expired) else {
                        store.delete_session(&hash).map_err(|e| e.to_string())?;
                        return Ok(Err(NoSession::SignIn));
                    };
                    let active = node.authorization_in_force(s.clock.as_ref());
                    if let Err(why) = staff::still_allowed(&staff, active.as_deref()) {
                        node.store.delete_session(&hash).map_err(|e| e.to_string())?;
                        return Ok(Err(NoSession::Ended(Box::new(staff), why)));
                    }
                    if age == SessionAge::Touch {
                        node.store.touch_session(&hash, now).map_err(|e| e.to_string())?;
                    }
                    Ok(Ok(Signed { must_set_secret: staff.secret_hash.is_none(), op: operator_of(&staff), session }))
                })
                .await
                .map_err(IntoResponse::into_response)?
                .map_err(|e| AppError::Internal(e).into_response())?,
        };
        match result {
            Ok(signed) => {
                if signed.must_set_secret && !matches!(route.as_str(), "/pin" | "/logout") {
                    return Err(Redirect::to("/pin").into_response());
                }
                Ok(signed)
            }
            Err(NoSession::SignIn) => {
                let entry =
                    NewEntry::new("anonymous", Action::Denied, Outcome::Denied, format!("{route}: not signed in"));
                if state.audit.record(entry).await.is_err() {
                    return Err(AppError::AuditUnavailable("denial not recorded".into()).into_response());
                }
                let jar = CookieJar::new().remove(Cookie::build(SESSION_COOKIE).path("/"));
                Err((jar, Redirect::to("/login")).into_response())
            }
            Err(NoSession::Ended(staff, why)) => {
                let op = operator_of(&staff);
                let entry = op.entry(Action::Denied, Outcome::Denied, format!("{route}: {why:?}"));
                if state.audit.record(entry).await.is_err() {
                    return Err(AppError::AuditUnavailable("denial not recorded".into()).into_response());
                }
                let jar = CookieJar::new().remove(Cookie::build(SESSION_COOKIE).path("/"));
                // The authorization's end shows the closed page itself, so staff see why.
                let message = match why {
                    LoginError::AuthorizationEnded => state
                        .with_node(|node, s| node.check_access(s.clock.as_ref()).err())
                        .await
                        .ok()
                        .flatten()
                        .map_or_else(|| why.to_string(), |denied| format!("{denied}。{why}")),
                    _ => why.to_string(),
                };
                Err((jar, page_error(StatusCode::FORBIDDEN, "利用できません", &message, None)).into_response())
            }
        }
    }
}

/// The status page shows who is signed in, if anyone; a missing or stale cookie is no error there.
impl axum::extract::OptionalFromRequestParts<AppState> for Signed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        if CookieJar::from_headers(&parts.headers).get(SESSION_COOKIE).is_none() {
            return Ok(None);
        }
        Ok(<Signed as FromRequestParts<AppState>>::from_request_parts(parts, state).await.ok())
    }
}

fn operator_of(s: &StaffRow) -> Operator {
    Operator {
        id: s.id.clone(),
        name: s.name.clone(),
        facility: s.facility.clone(),
        role: Role::parse(&s.role).unwrap_or(Role::Support),
    }
}

/// A signed-in coordinator.
pub struct Coordinator(pub Signed);

impl FromRequestParts<AppState> for Coordinator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let signed = Signed::from_request_parts(parts, state).await?;
        if signed.op.role == Role::Coordinator {
            return Ok(Coordinator(signed));
        }
        let _ = state.audit.record(signed.op.entry(Action::Denied, Outcome::Denied, "web: coordinator page")).await;
        Err(page_error(
            StatusCode::FORBIDDEN,
            "コーディネーター専用です",
            "このページはコーディネーターだけが使えます。",
            Some(&signed.bar()),
        ))
    }
}

/// The open data for a signed-in operator, or the closed page (logged with who asked).
async fn open_for(state: &AppState, signed: &Signed) -> Result<Arc<OpenData>, Response> {
    access::open_data(state, &signed.op, "web").await.map_err(|r| refused_page(&r, &signed.bar()))
}

fn refused_page(r: &Refused, user: &UserBar) -> Response {
    let (status, title) = match r {
        Refused::Closed(_) => (StatusCode::FORBIDDEN, "検索できません"),
        Refused::Forbidden(_) => (StatusCode::FORBIDDEN, "できませんでした"),
        Refused::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, "少し待ってください"),
        Refused::BadRequest(_) => (StatusCode::BAD_REQUEST, "できませんでした"),
        Refused::NotFound(_) => (StatusCode::NOT_FOUND, "見つかりません"),
        Refused::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "一時的に利用できません"),
    };
    page_error(status, title, &r.to_string(), Some(user))
}

// ---- sign-in ----

#[derive(Debug, Deserialize)]
pub struct LoginParams {
    #[serde(default)]
    staff_id: String,
}

pub async fn login_form(jar: CookieJar, UrlQuery(p): UrlQuery<LoginParams>) -> Response {
    let csrf = staff::random_token();
    let page = views::login_page(&Chrome { drill: drill_now(), user: None }, &csrf, &p.staff_id, None);
    (jar.add(cookie(LOGIN_CSRF_COOKIE, csrf.to_string())), html(page)).into_response()
}

/// What sign-in needs from the store: the operator (if the id exists), the node's time and the
/// authorization in force.
type LoginLookup = (Option<StaffRow>, DateTime<Utc>, Option<String>);

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    staff_id: String,
    #[serde(default)]
    secret: String,
}

pub async fn login(State(state): State<AppState>, jar: CookieJar, Form(form): Form<LoginForm>) -> Response {
    let chrome = Chrome { drill: drill_now(), user: None };
    let staff_id = form.staff_id.trim().to_owned();
    let again = |jar: CookieJar, status: StatusCode, message: &str| {
        let csrf = staff::random_token();
        let page = views::login_page(&chrome, &csrf, &staff_id, Some(message));
        (status, jar.add(cookie(LOGIN_CSRF_COOKIE, csrf.to_string())), html(page)).into_response()
    };
    let expected = jar.get(LOGIN_CSRF_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        let _ = state
            .audit
            .record(NewEntry::new("anonymous", Action::Denied, Outcome::Denied, "login: CSRF token missing or wrong"))
            .await;
        return again(jar, StatusCode::FORBIDDEN, "画面の有効期限が切れました。もう一度入力してください。");
    }
    let id = staff_id.clone();
    let looked_up = state
        .with_node(move |node, s| -> Result<LoginLookup, String> {
            let now = node.now(s.clock.as_ref()).map_err(|e| e.to_string())?;
            let staff = node.store.staff(&id).map_err(|e| e.to_string())?;
            let active = node.authorization_in_force(s.clock.as_ref());
            Ok((staff, now, active))
        })
        .await;
    let (row, now, active) = match looked_up {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return AppError::Internal(e).into_response(),
        Err(e) => return e.into_response(),
    };
    // Argon2 runs off the runtime and without holding the node.
    let secret = zeroize::Zeroizing::new(form.secret);
    let checked = {
        let row = row.clone();
        tokio::task::spawn_blocking(move || {
            let result = staff::check_login(row.as_ref(), &secret, now);
            match (&result, &row) {
                (Ok(_), Some(r)) => staff::still_allowed(r, active.as_deref()).and(result),
                _ => result,
            }
        })
        .await
    };
    let checked = match checked {
        Ok(c) => c,
        Err(e) => return AppError::Internal(e.to_string()).into_response(),
    };
    let operator = row.as_ref().map_or_else(|| "anonymous".to_owned(), |r| r.id.clone());
    match checked {
        Ok(signed_in) => {
            let token = staff::random_token();
            let csrf = staff::random_token();
            let id = staff_id.clone();
            let session = SessionRow {
                token_hash: staff::token_hash(&token),
                staff_id: id.clone(),
                csrf: csrf.to_string(),
                created_at: now,
                last_seen: now,
            };
            let stored = state
                .with_node(move |node, _| -> Result<(), String> {
                    // Sessions that can no longer be used are removed whenever someone signs in.
                    let idle = now - Duration::seconds(crate::limits::SESSION_IDLE_SECONDS);
                    let old = now - Duration::seconds(crate::limits::SESSION_MAX_SECONDS);
                    node.store.expire_sessions(idle, old).map_err(|e| e.to_string())?;
                    node.store.note_login_success(&id).map_err(|e| e.to_string())?;
                    node.store.add_session(&session).map_err(|e| e.to_string())
                })
                .await;
            if let Err(e) | Ok(Err(e)) = stored.map_err(|e| format!("{e:?}")) {
                return AppError::Internal(e).into_response();
            }
            let mut entry = NewEntry::new(&operator, Action::Login, Outcome::Ok, "web login");
            entry.role = row.as_ref().and_then(|r| Role::parse(&r.role));
            if let Err(e) = state.audit.record(entry).await {
                return AppError::AuditUnavailable(e.to_string()).into_response();
            }
            let jar =
                jar.remove(Cookie::build(LOGIN_CSRF_COOKIE).path("/")).add(cookie(SESSION_COOKIE, token.to_string()));
            let next = if signed_in == SignedIn::MustSetSecret { "/pin" } else { "/search" };
            (jar, Redirect::to(next)).into_response()
        }
        Err(why) => {
            if matches!(why, LoginError::Wrong) && row.is_some() {
                let id = staff_id.clone();
                let _ = state
                    .with_node(move |node, _| {
                        node.store.note_login_failure(
                            &id,
                            LOGIN_FAILURES_MAX,
                            now + Duration::seconds(LOGIN_LOCKOUT_SECONDS),
                        )
                    })
                    .await;
            }
            let entry = NewEntry::new(&operator, Action::Login, Outcome::Denied, format!("web login: {why:?}"));
            if let Err(e) = state.audit.record(entry).await {
                return AppError::AuditUnavailable(e.to_string()).into_response();
            }
            again(jar, StatusCode::UNAUTHORIZED, &why.to_string())
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    signed: Signed,
    jar: CookieJar,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(r) = signed.check_csrf(&state, &form.csrf).await {
        return r;
    }
    let hash = signed.session.token_hash.clone();
    let _ = state.with_node(move |node, _| node.store.delete_session(&hash)).await;
    let _ = state.audit.record(signed.op.entry(Action::Login, Outcome::Ok, "web logout")).await;
    (jar.remove(Cookie::build(SESSION_COOKIE).path("/")), Redirect::to("/login")).into_response()
}

pub async fn pin_form(signed: Signed) -> Response {
    if !signed.must_set_secret {
        return Redirect::to("/search").into_response();
    }
    let bar = signed.bar();
    html(views::set_secret_page(&Chrome { drill: drill_now(), user: Some(&bar) }, &signed.session.csrf, None))
        .into_response()
}

#[derive(Deserialize)]
pub struct PinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    again: String,
}

pub async fn set_pin(State(state): State<AppState>, signed: Signed, Form(form): Form<PinForm>) -> Response {
    if let Err(r) = signed.check_csrf(&state, &form.csrf).await {
        return r;
    }
    // Only right after the one-time code: changing a PIN would need the old one.
    if !signed.must_set_secret {
        return Redirect::to("/search").into_response();
    }
    let bar = signed.bar();
    let chrome = Chrome { drill: drill_now(), user: Some(&bar) };
    let (secret, again) = (zeroize::Zeroizing::new(form.secret), zeroize::Zeroizing::new(form.again));
    if *secret != *again {
        let page = views::set_secret_page(&chrome, &signed.session.csrf, Some("2回の入力が一致しません。"));
        return (StatusCode::BAD_REQUEST, html(page)).into_response();
    }
    let hashed = tokio::task::spawn_blocking(move || staff::new_secret_hash(&secret)).await;
    let hash = match hashed {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            let page = views::set_secret_page(&chrome, &signed.session.csrf, Some(&e.to_string()));
            return (StatusCode::BAD_REQUEST, html(page)).into_response();
        }
        Err(e) => return AppError::Internal(e.to_string()).into_response(),
    };
    let id = signed.op.id.clone();
    if let Err(e) | Ok(Err(e)) = state
        .with_node(move |node, _| node.store.set_staff_secret(&id, &hash).map_err(|e| e.to_string()))
        .await
        .map_err(|e| format!("{e:?}"))
    {
        return AppError::Internal(e).into_response();
    }
    if let Err(e) = state.audit.record(signed.op.entry(Action::Login, Outcome::Ok, "web: PIN set")).await {
        return AppError::AuditUnavailable(e.to_string()).into_response();
    }
    Redirect::to("/search").into_response()
}

// ---- search and the person ----

pub async fn search_form(State(state): State<AppState>, signed: Signed) -> Response {
    let open = match open_for(&state, &signed).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    drop(open);
    let bar = signed.bar();
    let chrome = Chrome { drill: drill_now(), user: Some(&bar) };
    html(views::search_page(&chrome, &signed.session.csrf, &views::SearchForm::default(), None, None)).into_response()
}

pub async fn search(State(state): State<AppState>, signed: Signed, Form(form): Form<views::SearchForm>) -> Response {
    if let Err(r) = signed.check_csrf(&state, &form.csrf).await {
        return r;
    }
    let open = match open_for(&state, &signed).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let bar = signed.bar();
    let chrome = Chrome { drill: drill_now(), user: Some(&bar) };
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    let card = !form.insured_number.trim().is_empty() || !form.insurer_number.trim().is_empty();
    let query = if card {
        crate::search::matcher::Query {
            insurer_number: some(&form.insurer_number),
            insured_number: some(&form.insured_number),
            birth_date: some(&form.card_birth_date),
            ..Default::default()
        }
    } else {
        crate::search::matcher::Query {
            name: some(&form.name),
            birth_date: some(&form.birth_date),
            sex: some(&form.sex),
            insurer_or_address: some(&form.place),
            ..Default::default()
        }
    };
    match access::search(&state, &signed.op, &open, query, "web").await {
        Ok((found, receipt)) => {
            let results = views::SearchResults { verdict: found.verdict, candidates: found.candidates };
            let page = views::search_page(&chrome, &signed.session.csrf, &form, None, Some(&results));
            Audited::new(receipt, html(page)).into_response()
        }
        Err(Refused::BadRequest(message)) => {
            let page = views::search_page(&chrome, &signed.session.csrf, &form, Some(&message), None);
            (StatusCode::BAD_REQUEST, html(page)).into_response()
        }
        Err(r) => refused_page(&r, &bar),
    }
}

/// The purpose stated in this session for this person, if any.
async fn stated_purpose(state: &AppState, signed: &Signed, person: &str) -> Result<Option<Purpose>, Response> {
    let (hash, person) = (signed.session.token_hash.clone(), person.to_owned());
    let stored = state
        .with_node(move |node, _| node.store.session_purpose(&hash, &person))
        .await
        .map_err(IntoResponse::into_response)?
        .map_err(|e| AppError::Internal(e.to_string()).into_response())?;
    Ok(stored.map(|label| match label.strip_prefix("その他：") {
        Some(text) => Purpose::Other(text.to_owned()),
        None => Purpose::parse(&label, "").unwrap_or(Purpose::Other(label)),
    }))
}

pub async fn person(State(state): State<AppState>, signed: Signed, Path(id): Path<String>) -> Response {
    show_person(&state, &signed, &id, None).await
}

async fn show_person(state: &AppState, signed: &Signed, id: &str, error: Option<&str>) -> Response {
    let open = match open_for(state, signed).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let bar = signed.bar();
    let chrome = Chrome { drill: drill_now(), user: Some(&bar) };
    let purpose = match stated_purpose(state, signed, id).await {
        Ok(Some(p)) => p,
        Ok(None) => return html(views::purpose_page(&chrome, &signed.session.csrf, id, None)).into_response(),
        Err(r) => return r,
    };
    match access::open_person(state, &signed.op, &open, id, &purpose, Action::View, "web").await {
        Ok((view, receipt)) => {
            let events = event_views(&view.events);
            let page = views::person_page(
                &chrome,
                &signed.session.csrf,
                &views::PersonPage {
                    disclosed: &view.record,
                    purpose: &view.purpose,
                    events: &events,
                    unreadable_events: view.unreadable_events,
                    error,
                    coordinator: signed.op.role == Role::Coordinator,
                },
            );
            let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
            Audited::new(receipt, (status, html(page))).into_response()
        }
        Err(r) => refused_page(&r, &bar),
    }
}

fn event_views(events: &[access::EventLine]) -> Vec<views::EventView> {
    events
        .iter()
        .map(|e| views::EventView {
            at: jst(e.at),
            by: if e.facility.is_empty() { e.staff_id.clone() } else { format!("{}（{}）", e.staff_id, e.facility) },
            place: e.event.where_text(),
            note: e.event.note.clone(),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct PurposeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    purpose_text: String,
}

pub async fn state_purpose(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<PurposeForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&state, &form.csrf).await {
        return r;
    }
    let bar = signed.bar();
    let chrome = Chrome { drill: drill_now(), user: Some(&bar) };
    let purpose = match Purpose::parse(&form.purpose, &form.purpose_text) {
        Ok(p) => p,
        Err(e) => {
            let page = views::purpose_page(&chrome, &signed.session.csrf, &id, Some(&e.to_string()));
            return (StatusCode::BAD_REQUEST, html(page)).into_response();
        }
    };
    if crate::model::PersonId::parse(&id).is_err() {
        return refused_page(&Refused::NotFound("この個人IDの記録はありません".into()), &bar);
    }
    let (hash, person, label) = (signed.session.token_hash.clone(), id.clone(), purpose.label());
    let stored = state
        .with_node(move |node, s| -> Result<(), String> {
            let now = node.now(s.clock.as_ref()).map_err(|e| e.to_string())?;
            node.store.set_session_purpose(&hash, &person, &label, now).map_err(|e| e.to_string())
        })
        .await;
    if let Err(e) | Ok(Err(e)) = stored.map_err(|e| format!("{e:?}")) {
        return AppError::Internal(e).into_response();
    }
    Redirect::to(&format!("/person/{id}")).into_response()
}

#[derive(Deserialize)]
pub struct EventForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    event: FieldEventInput,
}

pub async fn add_event(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<EventForm>,
) -> Response {
    if let Err(r) = signed.check_csrf(&state, &form.csrf).await {
        return r;
    }
    let event = match form.event.parse() {
        Ok(e) => e,
        Err(e) => return show_person(&state, &signed, &id, Some(&e.to_string())).await,
    };
    let open = match open_for(&state, &signed).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    match access::record_event(&state, &signed.op, &open, &id, event, "web").await {
        Ok(_) => Redirect::to(&format!("/person/{id}#whereabouts")).into_response(),
        Err(r) => refused_page(&r, &signed.bar()),
    }
}

pub async fn handover(State(state): State<AppState>, signed: Signed, Path(id): Path<String>) -> Response {
    let open = match open_for(&state, &signed).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let bar = signed.bar();
    let chrome = Chrome { drill: drill_now(), user: Some(&bar) };
    let purpose = match stated_purpose(&state, &signed, &id).await {
        Ok(Some(p)) => p,
        Ok(None) => return html(views::purpose_page(&chrome, &signed.session.csrf, &id, None)).into_response(),
        Err(r) => return r,
    };
    match access::open_person(&state, &signed.op, &open, &id, &purpose, Action::Print, "web handover").await {
        Ok((view, receipt)) => {
            let events = event_views(&view.events);
            let (node_id, now) = state
                .with_node(|node, s| (node.info.node_id.clone(), node.now(s.clock.as_ref()).ok()))
                .await
                .unwrap_or_default();
            let printed_at = now.map(jst).unwrap_or_default();
            let by = format!("{}（{}）", signed.op.name, signed.op.role.label());
            let page = views::handover_sheet(
                &chrome,
                &views::HandoverSheet {
                    disclosed: &view.record,
                    events: &events,
                    purpose: &view.purpose,
                    printed_at: &printed_at,
                    printed_by: &by,
                    node_id: &node_id,
                    audit_seq: receipt.seq(),
                },
            );
            Audited::new(receipt, html(page)).into_response()
        }
        Err(r) => refused_page(&r, &bar),
    }
}

// ---- the coordinator ----

async fn manage_view(
    state: &AppState,
    message: Option<String>,
    error: Option<String>,
) -> Result<views::ManageView, Response> {
    state
        .with_node(move |node, s| -> Result<views::ManageView, String> {
            let now = node.now(s.clock.as_ref()).map_err(|e| e.to_string())?;
            let access = node.check_access(s.clock.as_ref());
            let active_id = node.authorization_in_force(s.clock.as_ref());
            let authorization = node.active_authorization(s.clock.as_ref()).map_err(|e| e.to_string())?;
            let staff = node.store.all_staff().map_err(|e| e.to_string())?;
            let staff = staff
                .iter()
                .map(|st| {
                    let allowed = staff::still_allowed(st, active_id.as_deref());
                    let state = match (&st.revoked_at, &allowed) {
                        (Some(at), _) => format!("取り消し済み（{}）", jst(*at)),
                        (None, Err(_)) => "認可終了".to_owned(),
                        (None, Ok(())) if st.secret_hash.is_none() => "有効（コード未使用）".to_owned(),
                        (None, Ok(())) => "有効".to_owned(),
                    };
                    views::StaffLine {
                        id: st.id.clone(),
                        name: st.name.clone(),
                        facility: st.facility.clone(),
                        role: Role::parse(&st.role).unwrap_or(Role::Support),
                        enrolled_at: jst(st.enrolled_at),
                        state,
                        active: st.revoked_at.is_none() && allowed.is_ok(),
                    }
                })
                .collect();
            let (authorization_text, facilities) = match (&access, &authorization) {
                (Ok(row), Some(a)) => (
                    format!(
                        "有効：{}（{} まで、ID {} 連番 {}）{}",
                        row.disaster,
                        jst(row.not_after),
                        row.id,
                        row.serial,
                        if row.drill { "・訓練" } else { "" }
                    ),
                    describe_facilities(a),
                ),
                (Err(denied), _) => (denied.to_string(), String::new()),
                (Ok(_), None) => ("有効".to_owned(), String::new()),
            };
            Ok(views::ManageView {
                staff,
                authorization: authorization_text,
                authorization_active: access.is_ok(),
                facilities,
                now: jst(now),
                message,
                error,
            })
        })
        .await
        .map_err(IntoResponse::into_response)?
        .map_err(|e| AppError::Internal(e).into_response())
}

fn describe_facilities(a: &crate::authz::Authorization) -> String {
    let f = &a.facilities;
    if f.is_empty() { "なし（この認可では職員を登録できません）".to_owned() } else { f.join("、") }
}

async fn manage_page(
    state: &AppState,
    c: &Signed,
    status: StatusCode,
    message: Option<String>,
    error: Option<String>,
) -> Response {
    let view = match manage_view(state, message, error).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let bar = c.bar();
    (status, html(views::manage_page(&Chrome { drill: drill_now(), user: Some(&bar) }, &c.session.csrf, &view)))
        .into_response()
}

pub async fn manage(State(state): State<AppState>, Coordinator(c): Coordinator) -> Response {
    manage_page(&state, &c, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
pub struct EnrolForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    organisation: String,
    #[serde(default)]
    facility: String,
    #[serde(default)]
    role: String,
}

pub async fn enrol(
    State(state): State<AppState>,
    Coordinator(c): Coordinator,
    Form(form): Form<EnrolForm>,
) -> Response {
    if let Err(r) = c.check_csrf(&state, &form.csrf).await {
        return r;
    }
    let Some(role) = Role::parse(&form.role) else {
        return manage_page(&state, &c, StatusCode::BAD_REQUEST, None, Some("役割を選んでください".into())).await;
    };
    let name = match form.organisation.trim() {
        "" => form.name.trim().to_owned(),
        org => format!("{}（{org}）", form.name.trim()),
    };
    let facility = form.facility.trim().to_owned();
    let (n, f) = (name.clone(), facility.clone());
    let result = state
        .with_node(move |node, s| -> Result<Result<staff::Enrolled, staff::StaffError>, String> {
            let authorization = node.active_authorization(s.clock.as_ref()).map_err(|e| e.to_string())?;
            let now = node.now(s.clock.as_ref()).map_err(|e| e.to_string())?;
            Ok(staff::add(&node.store, authorization.as_ref(), &n, &f, role, now))
        })
        .await;
    let result = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return AppError::Internal(e).into_response(),
        Err(e) => return e.into_response(),
    };
    let entry = match &result {
        Ok(e) => NewEntry {
            facility: Some(facility.clone()).filter(|f| !f.is_empty()),
            role: Some(role),
            ..c.op.entry(Action::Enrol, Outcome::Ok, e.id.clone())
        },
        Err(e) => c.op.entry(Action::Enrol, Outcome::Denied, e.to_string()),
    };
    if let Err(e) = state.audit.record(entry).await {
        return AppError::AuditUnavailable(e.to_string()).into_response();
    }
    match result {
        Ok(enrolled) => {
            let bar = c.bar();
            let view = views::EnrolledView {
                id: enrolled.id.clone(),
                name,
                role,
                facility,
                code: enrolled.login_code.to_string(),
                token: enrolled.token.to_string(),
                login_url: format!("{}login", state.url),
            };
            html(views::enrolled_page(&Chrome { drill: drill_now(), user: Some(&bar) }, &view)).into_response()
        }
        Err(e) => manage_page(&state, &c, StatusCode::BAD_REQUEST, None, Some(e.to_string())).await,
    }
}

pub async fn revoke(
    State(state): State<AppState>,
    Coordinator(c): Coordinator,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(r) = c.check_csrf(&state, &form.csrf).await {
        return r;
    }
    if id == c.op.id {
        return manage_page(&state, &c, StatusCode::BAD_REQUEST, None, Some("自分自身は取り消せません".into())).await;
    }
    let target = id.clone();
    let revoked = state
        .with_node(move |node, s| -> Result<bool, String> {
            let now = node.now(s.clock.as_ref()).map_err(|e| e.to_string())?;
            node.store.revoke_staff(&target, now).map_err(|e| e.to_string())
        })
        .await;
    let revoked = match revoked {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return AppError::Internal(e).into_response(),
        Err(e) => return e.into_response(),
    };
    let outcome = if revoked { Outcome::Ok } else { Outcome::Failed };
    if let Err(e) = state.audit.record(c.op.entry(Action::Revoke, outcome, id.clone())).await {
        return AppError::AuditUnavailable(e.to_string()).into_response();
    }
    if revoked {
        manage_page(
            &state,
            &c,
            StatusCode::OK,
            Some(format!("{id} の登録を取り消しました。次の操作から使えません。")),
            None,
        )
        .await
    } else {
        manage_page(&state, &c, StatusCode::NOT_FOUND, None, Some(format!("{id} は見つからないか、取り消し済みです")))
            .await
    }
}

pub async fn import_authorization(
    State(state): State<AppState>,
    Coordinator(c): Coordinator,
    mut form: Multipart,
) -> Response {
    let (mut csrf, mut code) = (String::new(), String::new());
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                let text = match field.text().await {
                    Ok(t) => t,
                    Err(_) => break,
                };
                match name.as_str() {
                    "csrf" => csrf = text,
                    "code" | "file" if !text.trim().is_empty() => code = text,
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) => {
                return manage_page(
                    &state,
                    &c,
                    StatusCode::BAD_REQUEST,
                    None,
                    Some("送信内容を読めません。もう一度送ってください".into()),
                )
                .await;
            }
        }
    }
    if let Err(r) = c.check_csrf(&state, &csrf).await {
        return r;
    }
    if code.trim().is_empty() {
        return manage_page(
            &state,
            &c,
            StatusCode::BAD_REQUEST,
            None,
            Some("認可ファイルを選ぶか、認可コードを貼り付けてください".into()),
        )
        .await;
    }
    let result = state
        .with_node(move |node, s| {
            node.import_authorization(code.trim(), &s.secret, s.clock.as_ref()).map_err(|e| e.to_string())
        })
        .await;
    let result = match result {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let entry = match &result {
        Ok(crate::gate::ImportOutcome::Activated { id, serial, .. }) => {
            c.op.entry(Action::AuthorizationImport, Outcome::Ok, format!("{id} #{serial} activated"))
        }
        Ok(crate::gate::ImportOutcome::Closed { id, serial }) => {
            c.op.entry(Action::AuthorizationImport, Outcome::Ok, format!("{id} #{serial} ended it"))
        }
        Err(e) => c.op.entry(Action::AuthorizationRefused, Outcome::Denied, e.clone()),
    };
    if let Err(e) = state.audit.record(entry).await {
        return AppError::AuditUnavailable(e.to_string()).into_response();
    }
    match result {
        Ok(crate::gate::ImportOutcome::Activated { until, .. }) => {
            manage_page(
                &state,
                &c,
                StatusCode::OK,
                Some(format!("認可を取り込みました。{} まで検索できます。", jst(until))),
                None,
            )
            .await
        }
        Ok(crate::gate::ImportOutcome::Closed { .. }) => {
            state.gate.close();
            manage_page(
                &state,
                &c,
                StatusCode::OK,
                Some("認可は中央によって終了されました。検索はできません。".into()),
                None,
            )
            .await
        }
        Err(e) => manage_page(&state, &c, StatusCode::BAD_REQUEST, None, Some(e)).await,
    }
}

pub async fn close_authorization(
    State(state): State<AppState>,
    Coordinator(c): Coordinator,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(r) = c.check_csrf(&state, &form.csrf).await {
        return r;
    }
    let closed = state.with_node(|node, s| node.close_authorization(s.clock.as_ref()).map_err(|e| e.to_string())).await;
    state.gate.close();
    let closed = match closed {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return AppError::Internal(e).into_response(),
        Err(e) => return e.into_response(),
    };
    let detail = closed.clone().unwrap_or_else(|| "nothing active".into());
    if let Err(e) = state.audit.record(c.op.entry(Action::AuthorizationClose, Outcome::Ok, detail)).await {
        return AppError::AuditUnavailable(e.to_string()).into_response();
    }
    let message = match closed {
        Some(id) => format!("認可 {id} を終了しました。検索はできません。"),
        None => "有効な認可はありませんでした。".to_owned(),
    };
    manage_page(&state, &c, StatusCode::OK, Some(message), None).await
}

#[derive(Deserialize)]
pub struct ClockForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
}

/// A `datetime-local` value, read as Japan time.
fn parse_local_jst(s: &str) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    let jst = chrono::FixedOffset::east_opt(9 * 3600).expect("JST is a valid offset");
    jst.from_local_datetime(&naive).single().map(|t| t.with_timezone(&Utc))
}

pub async fn move_clock(
    State(state): State<AppState>,
    Coordinator(c): Coordinator,
    Form(form): Form<ClockForm>,
) -> Response {
    if let Err(r) = c.check_csrf(&state, &form.csrf).await {
        return r;
    }
    let Some(to) = parse_local_jst(&form.to) else {
        return manage_page(
            &state,
            &c,
            StatusCode::BAD_REQUEST,
            None,
            Some("時刻を「年-月-日 時:分」で入力してください".into()),
        )
        .await;
    };
    let moved = state
        .with_node(move |node, s| -> Result<DateTime<Utc>, String> {
            let before = node.now(s.clock.as_ref()).map_err(|e| e.to_string())?;
            node.move_clock_forward(to, s.clock.as_ref()).map_err(|e| e.to_string())?;
            Ok(before)
        })
        .await;
    let moved = match moved {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let entry = match &moved {
        Ok(before) => {
            c.op.entry(Action::ClockMove, Outcome::Ok, format!("{} -> {}", before.to_rfc3339(), to.to_rfc3339()))
        }
        Err(e) => c.op.entry(Action::ClockMove, Outcome::Denied, e.clone()),
    };
    if let Err(e) = state.audit.record(entry).await {
        return AppError::AuditUnavailable(e.to_string()).into_response();
    }
    match moved {
        Ok(before) => {
            manage_page(
                &state,
                &c,
                StatusCode::OK,
                Some(format!("時計を {} から {} に進めました。", jst(before), jst(to))),
                None,
            )
            .await
        }
        Err(e) => manage_page(&state, &c, StatusCode::BAD_REQUEST, None, Some(e)).await,
    }
}

#[derive(Deserialize)]
pub struct AuditParams {
    before: Option<u64>,
    #[serde(default)]
    person: String,
}

pub async fn audit_log(
    State(state): State<AppState>,
    Coordinator(c): Coordinator,
    UrlQuery(p): UrlQuery<AuditParams>,
) -> Response {
    let person = p.person.trim().to_owned();
    if !person.is_empty() && crate::model::PersonId::parse(&person).is_err() {
        return manage_page(
            &state,
            &c,
            StatusCode::BAD_REQUEST,
            None,
            Some("個人IDは32桁の英数字（小文字）です".into()),
        )
        .await;
    }
    let filter = person.clone();
    let entries = state
        .with_node(move |node, _| {
            if filter.is_empty() {
                node.store.audit_page(p.before, AUDIT_PAGE_ENTRIES)
            } else {
                node.store.audit_entries_for(&filter).map(|mut e| {
                    e.reverse();
                    e
                })
            }
        })
        .await;
    let entries = match entries {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => return AppError::Internal(e.to_string()).into_response(),
        Err(e) => return e.into_response(),
    };
    // Reading the log, and above all one person's history, is itself an access.
    let mut entry = c.op.entry(
        Action::View,
        Outcome::Ok,
        if person.is_empty() { "audit log".to_owned() } else { "person access history".to_owned() },
    );
    if let Ok(id) = crate::model::PersonId::parse(&person) {
        entry.subjects = vec![id];
    }
    let receipt = match state.audit.record(entry).await {
        Ok(r) => r,
        Err(e) => return AppError::AuditUnavailable(e.to_string()).into_response(),
    };
    let older =
        (person.is_empty() && entries.len() == AUDIT_PAGE_ENTRIES).then(|| entries.last().map(|e| e.seq)).flatten();
    let lines: Vec<views::AuditLine> = entries
        .iter()
        .map(|e| views::AuditLine {
            seq: e.seq,
            at: DateTime::parse_from_rfc3339(&e.wall_time)
                .map_or_else(|_| e.wall_time.clone(), |t| jst(t.with_timezone(&Utc))),
            operator: e.operator.clone(),
            facility: e.facility.clone().unwrap_or_default(),
            role: e.role.as_deref().and_then(Role::parse).map(|r| r.label().to_owned()).unwrap_or_default(),
            action: e.action.clone(),
            subjects: e.subjects.len(),
            purpose: e.purpose.clone().unwrap_or_default(),
            outcome: e.outcome.clone(),
            detail: e.detail.clone(),
        })
        .collect();
    let bar = c.bar();
    let page = views::audit_page(
        &Chrome { drill: drill_now(), user: Some(&bar) },
        (!person.is_empty()).then_some(person.as_str()),
        &lines,
        older,
    );
    Audited::new(receipt, html(page)).into_response()
}
