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
use crate::audit::{Action, Audited, NewEntry, Outcome, Receipt};
use crate::authz::{Role, SignedAuthorization, jst};
use crate::disclose::{FieldEventInput, Purpose};
use crate::gate::{ImportOutcome, OpenData};
use crate::http::{AppError, AppState, ClientAddr, drill_now};
use crate::limits::{AUDIT_PAGE_ENTRIES, LOGIN_LOCKOUT_SECONDS};
use crate::model::PersonId;
use crate::node::NodeError;
use crate::staff::{self, LoginError, SessionAge, SignedIn};
use crate::store::{Claim, SessionRow, StaffRow, StoreError};
use crate::throttle::Held;
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

/// What a page handler answers: the page, or the page that says why not. Both are responses,
/// so `?` works on every step.
pub type Page = Result<Response, Response>;

/// Records an audit entry; if the log cannot be written, nothing more is done (503).
async fn log(state: &AppState, entry: NewEntry) -> Result<Receipt, Response> {
    state.audit.record(entry).await.map_err(|e| AppError::AuditUnavailable(e.to_string()).into())
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

    fn chrome<'a>(&self, bar: &'a UserBar) -> Chrome<'a> {
        Chrome { drill: drill_now(), user: Some(bar) }
    }

    /// Refuses a form whose CSRF token is not this session's (logged).
    async fn check_csrf(&self, state: &AppState, token: &str) -> Result<(), Response> {
        if bool::from(self.session.csrf.as_bytes().ct_eq(token.as_bytes())) {
            return Ok(());
        }
        log(state, self.op.entry(Action::Denied, Outcome::Denied, "web: CSRF token missing or wrong")).await?;
        Err(page_error(
            StatusCode::FORBIDDEN,
            "送信できませんでした",
            "フォームの確認用の値が合いません。ページを開き直してから、もう一度送ってください。",
            Some(&self.bar()),
        ))
    }
}

/// A form body that holds only the fields its handler knows: an unknown field, or a value that
/// cannot be read, is refused with a page (400) before the handler runs, so no handler acts on
/// fields it did not ask for.
pub struct StrictForm<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for StrictForm<T> {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        match Form::<T>::from_request(request, state).await {
            Ok(Form(value)) => Ok(StrictForm(value)),
            Err(rejection) => {
                tracing::info!(%rejection, "form refused");
                Err(page_error(
                    StatusCode::BAD_REQUEST,
                    "送信できませんでした",
                    "送信内容に、このフォームにない項目か読めない値があります。ページを開き直してから、もう一度送ってください。",
                    None,
                ))
            }
        }
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
    /// The person was revoked, or their authorization ended: who, and the message they see.
    Ended(Operator, LoginError, String),
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let route = route_of(parts);
        let result = Signed::check(parts, state).await?;
        // Removal cookies are made from the request's jar: only a cookie the request carried
        // is removed in the response (an empty jar's removal sends nothing).
        let forget = CookieJar::from_headers(&parts.headers).remove(Cookie::build(SESSION_COOKIE).path("/"));
        match result {
            Ok(signed) if signed.must_set_secret && !matches!(route.as_str(), "/pin" | "/logout") => {
                Err(Redirect::to("/pin").into_response())
            }
            Ok(signed) => Ok(signed),
            Err(NoSession::SignIn) => {
                // Nobody: counted and summarised per address, not written one by one.
                refuse_anonymous(state, crate::http::client_addr(&parts.extensions), "page without a session")?;
                Err((forget, Redirect::to("/login")).into_response())
            }
            Err(NoSession::Ended(op, why, message)) => {
                log(state, op.entry(Action::Denied, Outcome::Denied, format!("{route}: {why:?}"))).await?;
                Err((forget, page_error(StatusCode::FORBIDDEN, "利用できません", &message, None)).into_response())
            }
        }
    }
}

fn route_of(parts: &Parts) -> String {
    parts.extensions.get::<axum::extract::MatchedPath>().map_or("", |p| p.as_str()).to_owned()
}

impl Signed {
    /// The session the request's cookie names, if it is live; or why not. An ended session is
    /// deleted here.
    async fn check(parts: &Parts, state: &AppState) -> Result<Result<Signed, NoSession>, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        let token = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned());
        let result = match token {
            None => Err(NoSession::SignIn),
            Some(token) => {
                state
                    .try_with_node(move |node, s| -> Result<Result<Signed, NoSession>, NodeError> {
                        let hash = staff::token_hash(&token);
                        let Some(session) = node.store.session(&hash)? else {
                            return Ok(Err(NoSession::SignIn));
                        };
                        let now = node.now(s.clock.as_ref())?;
                        let age = staff::session_age(&session, now);
                        let staff = node.store.staff(&session.staff_id)?;
                        let Some(staff) = staff.filter(|_| age != SessionAge::Expired) else {
                            node.store.delete_session(&hash)?;
                            return Ok(Err(NoSession::SignIn));
                        };
                        if let Err((why, message)) = node.staff_may_act(&staff, s.clock.as_ref()) {
                            node.store.delete_session(&hash)?;
                            return Ok(Err(NoSession::Ended(Operator::from(&staff), why, message)));
                        }
                        if age == SessionAge::Touch {
                            node.store.touch_session(&hash, now)?;
                        }
                        Ok(Ok(Signed {
                            must_set_secret: staff.secret_hash.is_none(),
                            op: Operator::from(&staff),
                            session,
                        }))
                    })
                    .await?
            }
        };
        Ok(result)
    }
}

/// The status page shows who is signed in, if anyone. It is public: a missing or stale cookie
/// is no refusal there (nothing is counted or written for it; the page clears the cookie). A
/// session that has just ended is recorded once, as on any page, and deleted.
impl axum::extract::OptionalFromRequestParts<AppState> for Signed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        if CookieJar::from_headers(&parts.headers).get(SESSION_COOKIE).is_none() {
            return Ok(None);
        }
        match Signed::check(parts, state).await {
            Ok(Ok(signed)) => Ok(Some(signed)),
            Ok(Err(NoSession::Ended(op, why, _))) => {
                let entry = op.entry(Action::Denied, Outcome::Denied, format!("{}: {why:?}", route_of(parts)));
                // The page is public either way; a log that cannot be written is the log's story.
                let _ = log(state, entry).await;
                Ok(None)
            }
            Ok(Err(NoSession::SignIn)) | Err(_) => Ok(None),
        }
    }
}

/// The cookie removal a public page sends when the request carried a session cookie that is no
/// longer a session, so the browser stops sending it.
pub fn forget_stale_session(jar: &CookieJar, signed: Option<&Signed>) -> Option<CookieJar> {
    (jar.get(SESSION_COOKIE).is_some() && signed.is_none())
        .then(|| jar.clone().remove(Cookie::build(SESSION_COOKIE).path("/")))
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
        log(state, signed.op.entry(Action::Denied, Outcome::Denied, "web: coordinator page")).await?;
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

/// The sign-in page with a fresh double-submit token (cookie and form field).
fn login_page(jar: CookieJar, status: StatusCode, staff_id: &str, error: Option<&str>) -> Response {
    let csrf = staff::random_token();
    let page = views::login_page(&Chrome { drill: drill_now(), user: None }, &csrf, staff_id, error);
    (status, jar.add(cookie(LOGIN_CSRF_COOKIE, csrf.to_string())), html(page)).into_response()
}

pub async fn login_form(jar: CookieJar, UrlQuery(p): UrlQuery<LoginParams>) -> Response {
    login_page(jar, StatusCode::OK, &p.staff_id, None)
}

/// What sign-in needs from the store: the operator (if the id exists), whether they may act
/// now, and whether this attempt may be checked (`Store::claim_login`); and the node's time.
type LoginLookup = (Option<(StaffRow, Result<(), (LoginError, String)>, Claim)>, DateTime<Utc>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    staff_id: String,
    #[serde(default)]
    secret: String,
}

/// Counts a request refused for having no session or token (summarised in the audit log by
/// `throttle`, not written one by one); an address that knocks too often gets 429 at once.
#[allow(clippy::result_large_err)] // The same `Response` every page handler's `Err` carries.
pub fn refuse_anonymous(state: &AppState, address: std::net::IpAddr, kind: &'static str) -> Result<(), Response> {
    if state.throttle.refused_anonymous(address, kind) {
        return Ok(());
    }
    Err(page_error(
        StatusCode::TOO_MANY_REQUESTS,
        "少し待ってください",
        "要求が多すぎます。1分ほど待ってから開き直してください。",
        None,
    ))
}

/// Sign-in: the double-submit token, then what this address may still try (`throttle`), a
/// place in the Argon2 queue, the account claimed atomically, and only then the secret.
pub async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    ClientAddr(address): ClientAddr,
    StrictForm(form): StrictForm<LoginForm>,
) -> Page {
    let staff_id = staff::normalize_id(&form.staff_id);
    let expected = jar.get(LOGIN_CSRF_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        refuse_anonymous(&state, address, "sign-in form token")?;
        let message = "画面の有効期限が切れました。もう一度入力してください。";
        return Ok(login_page(jar, StatusCode::FORBIDDEN, &staff_id, Some(message)));
    }
    let refuse = |jar: CookieJar, status: StatusCode, why: LoginError| {
        login_page(jar, status, &staff_id, Some(&why.to_string()))
    };
    if let Err(held) = state.throttle.may_try(address, &staff_id) {
        let wait = match held {
            Held::PairLocked(wait) | Held::AddressLocked(wait) => wait,
            _ => std::time::Duration::ZERO,
        };
        let now = state.try_with_node(|node, s| node.now(s.clock.as_ref())).await?;
        let until = jst(now + Duration::seconds(wait.as_secs() as i64 + 1));
        refuse_anonymous(&state, address, "sign-in while locked")?;
        return Ok(refuse(jar, StatusCode::UNAUTHORIZED, LoginError::Locked { until }));
    }
    let id = staff_id.clone();
    let known_device = state.throttle.known_device(address, &staff_id);
    let (found, now) = state
        .try_with_node(move |node, s| -> Result<LoginLookup, NodeError> {
            let now = node.now(s.clock.as_ref())?;
            let Some(st) = node.store.staff(&id)? else { return Ok((None, now)) };
            let allowed = node.staff_may_act(&st, s.clock.as_ref());
            let hold = now + Duration::seconds(crate::limits::LOGIN_ATTEMPT_HOLD_SECONDS);
            Ok(match node.store.claim_login(&id, now, hold)? {
                Claim::NoSuchStaff => (None, now),
                // The holder's own device is not held out by a rest that guesses from other
                // addresses keep renewing (its own in-flight limit still applies).
                Claim::Held { .. } if known_device => (Some((st, allowed, Claim::Claimed { failures: 0 })), now),
                claim => (Some((st, allowed, claim)), now),
            })
        })
        .await?;
    let row = found.as_ref().map(|(st, _, _)| st.clone());
    if let Some((_, _, Claim::Held { until })) = &found {
        // Not checked, so nothing is known of who asked: summarised, like any knock without a
        // session (a durable entry each would let anyone who knows an id grow the log).
        refuse_anonymous(&state, address, "sign-in while the account rests")?;
        let seconds = (*until - now).num_seconds().max(1);
        return Ok(refuse(jar, StatusCode::TOO_MANY_REQUESTS, LoginError::Wait { seconds }));
    }
    // Argon2 runs off the runtime, without holding the node, in its bounded queue.
    let secret = zeroize::Zeroizing::new(form.secret);
    let checked = state
        .throttle
        .hash(address, move || {
            let signed_in = staff::check_login(found.as_ref().map(|(st, _, _)| st), &secret).map_err(|why| {
                let message = why.to_string();
                (why, message)
            })?;
            match found {
                Some((_, Err(ended), _)) => Err(ended),
                _ => Ok(signed_in),
            }
        })
        .await;
    let checked = match checked {
        Ok(checked) => checked,
        Err(held) => {
            // Not checked: the account's claim is released, nothing counted.
            if let Some(st) = &row {
                let id = st.id.clone();
                state.try_with_node(move |node, _| node.store.release_login(&id)).await?;
            }
            let status =
                if held == Held::Overloaded { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::TOO_MANY_REQUESTS };
            return Ok(refuse(jar, status, LoginError::Busy));
        }
    };
    let signed_in = match checked {
        Ok(signed_in) => signed_in,
        Err((why, message)) => {
            let message = if why == LoginError::Wrong {
                let left = state.throttle.failed(address, &staff_id);
                match left {
                    0 => format!(
                        "{message}。この端末からは{}分間、この職員IDでログインできなくなりました",
                        LOGIN_LOCKOUT_SECONDS / 60
                    ),
                    n => format!(
                        "{message}。あと{n}回間違えると、この端末からは{}分間この職員IDでログインできなくなります",
                        LOGIN_LOCKOUT_SECONDS / 60
                    ),
                }
            } else {
                message
            };
            match &row {
                Some(st) => {
                    // Only a wrong secret counts against the account; the claim is released either way.
                    let (id, wrong) = (st.id.clone(), why == LoginError::Wrong);
                    state
                        .try_with_node(move |node, _| {
                            node.store.finish_login(&id, !wrong, |failures| {
                                staff::login_backoff(failures).map(|rest| now + rest)
                            })
                        })
                        .await?;
                    log(&state, NewEntry::new(&st.id, Action::Login, Outcome::Denied, format!("web login: {why:?}")))
                        .await?;
                }
                // Nobody: summarised, not one entry each (an unknown id proves nothing about anyone).
                None => refuse_anonymous(&state, address, "sign-in with an unknown id")?,
            }
            return Ok(login_page(jar, StatusCode::UNAUTHORIZED, &staff_id, Some(&message)));
        }
    };
    state.throttle.succeeded(address, &staff_id);
    let token = staff::random_token();
    let session = SessionRow {
        token_hash: staff::token_hash(&token),
        staff_id: staff_id.clone(),
        csrf: staff::random_token().to_string(),
        created_at: now,
        last_seen: now,
    };
    state
        .try_with_node(move |node, _| -> Result<(), StoreError> {
            // Sessions that can no longer be used are removed whenever someone signs in.
            let idle = now - Duration::seconds(crate::limits::SESSION_IDLE_SECONDS);
            let old = now - Duration::seconds(crate::limits::SESSION_MAX_SECONDS);
            node.store.expire_sessions(idle, old)?;
            node.store.finish_login(&session.staff_id, true, |_| None)?;
            node.store.add_session(&session)
        })
        .await?;
    let mut entry = NewEntry::new(&staff_id, Action::Login, Outcome::Ok, "web login");
    entry.role = row.as_ref().and_then(|r| Role::parse(&r.role));
    log(&state, entry).await?;
    let jar = jar.remove(Cookie::build(LOGIN_CSRF_COOKIE).path("/")).add(cookie(SESSION_COOKIE, token.to_string()));
    let next = if signed_in == SignedIn::MustSetSecret { "/pin" } else { "/search" };
    Ok((jar, Redirect::to(next)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    signed: Signed,
    jar: CookieJar,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Page {
    signed.check_csrf(&state, &form.csrf).await?;
    let hash = signed.session.token_hash.clone();
    state.try_with_node(move |node, _| node.store.delete_session(&hash)).await?;
    log(&state, signed.op.entry(Action::Login, Outcome::Ok, "web logout")).await?;
    Ok((jar.remove(Cookie::build(SESSION_COOKIE).path("/")), Redirect::to("/login")).into_response())
}

pub async fn pin_form(signed: Signed) -> Response {
    if !signed.must_set_secret {
        return Redirect::to("/search").into_response();
    }
    let bar = signed.bar();
    html(views::set_secret_page(&signed.chrome(&bar), &signed.session.csrf, None)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    again: String,
}

pub async fn set_pin(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    signed: Signed,
    StrictForm(form): StrictForm<PinForm>,
) -> Page {
    signed.check_csrf(&state, &form.csrf).await?;
    // Only right after the one-time code: changing a PIN would need the old one.
    if !signed.must_set_secret {
        return Ok(Redirect::to("/search").into_response());
    }
    let bar = signed.bar();
    let again = |message: &str| {
        let page = views::set_secret_page(&signed.chrome(&bar), &signed.session.csrf, Some(message));
        (StatusCode::BAD_REQUEST, html(page)).into_response()
    };
    let (secret, repeated) = (zeroize::Zeroizing::new(form.secret), zeroize::Zeroizing::new(form.again));
    if *secret != *repeated {
        return Ok(again("2回の入力が一致しません。"));
    }
    // Argon2 in the same bounded queue as sign-in.
    let Ok(hashed) = state.throttle.hash(address, move || staff::new_secret_hash(&secret)).await else {
        return Ok(again(&LoginError::Busy.to_string()));
    };
    let hash = match hashed {
        Ok(h) => h,
        Err(e) => return Ok(again(&e.to_string())),
    };
    let id = signed.op.id.clone();
    state.try_with_node(move |node, _| node.store.set_staff_secret(&id, &hash)).await?;
    log(&state, signed.op.entry(Action::Login, Outcome::Ok, "web: PIN set")).await?;
    Ok(Redirect::to("/search").into_response())
}

// ---- search and the person ----

pub async fn search_form(State(state): State<AppState>, signed: Signed) -> Page {
    // Only to show the closed page at once, rather than after the form is filled in.
    open_for(&state, &signed).await?;
    let bar = signed.bar();
    let page =
        views::search_page(&signed.chrome(&bar), &signed.session.csrf, &views::SearchForm::default(), None, None);
    Ok(html(page).into_response())
}

pub async fn search(
    State(state): State<AppState>,
    signed: Signed,
    StrictForm(form): StrictForm<views::SearchForm>,
) -> Page {
    signed.check_csrf(&state, &form.csrf).await?;
    let open = open_for(&state, &signed).await?;
    let bar = signed.bar();
    let chrome = signed.chrome(&bar);
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
            Ok(Audited::new(receipt, html(page)).into_response())
        }
        Err(Refused::BadRequest(message)) => {
            let page = views::search_page(&chrome, &signed.session.csrf, &form, Some(&message), None);
            Ok((StatusCode::BAD_REQUEST, html(page)).into_response())
        }
        Err(r) => Err(refused_page(&r, &bar)),
    }
}

/// The purpose stated in this session for this person; if none yet, the page that asks it.
async fn stated_purpose(state: &AppState, signed: &Signed, person: &PersonId) -> Result<Purpose, Response> {
    let (hash, id) = (signed.session.token_hash.clone(), person.clone());
    match state.try_with_node(move |node, _| node.store.session_purpose(&hash, id.as_str())).await? {
        Some(label) => Ok(Purpose::from_label(&label)),
        None => {
            let bar = signed.bar();
            Err(html(views::purpose_page(&signed.chrome(&bar), &signed.session.csrf, person, None)).into_response())
        }
    }
}

/// The person id of a page's path, parsed before anything else is done (a malformed one is
/// logged and answered with the not-found page).
async fn person_path(state: &AppState, signed: &Signed, raw: &str) -> Result<PersonId, Response> {
    access::person_id(state, &signed.op, raw, "web").await.map_err(|r| refused_page(&r, &signed.bar()))
}

pub async fn person(State(state): State<AppState>, signed: Signed, Path(raw): Path<String>) -> Page {
    let id = person_path(&state, &signed, &raw).await?;
    show_person(&state, &signed, &id, None).await
}

async fn show_person(state: &AppState, signed: &Signed, id: &PersonId, error: Option<&str>) -> Page {
    let open = open_for(state, signed).await?;
    let purpose = stated_purpose(state, signed, id).await?;
    let bar = signed.bar();
    let (view, receipt) = access::open_person(state, &signed.op, &open, id, &purpose, Action::View, "web")
        .await
        .map_err(|r| refused_page(&r, &bar))?;
    let events = event_views(&view.events);
    let page = views::person_page(
        &signed.chrome(&bar),
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
    Ok(Audited::new(receipt, (status, html(page))).into_response())
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
#[serde(deny_unknown_fields)]
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
    Path(raw): Path<String>,
    StrictForm(form): StrictForm<PurposeForm>,
) -> Page {
    signed.check_csrf(&state, &form.csrf).await?;
    let id = person_path(&state, &signed, &raw).await?;
    let bar = signed.bar();
    let purpose = match Purpose::parse(&form.purpose, &form.purpose_text) {
        Ok(p) => p,
        Err(e) => {
            let page = views::purpose_page(&signed.chrome(&bar), &signed.session.csrf, &id, Some(&e.to_string()));
            return Ok((StatusCode::BAD_REQUEST, html(page)).into_response());
        }
    };
    let (hash, person, label) = (signed.session.token_hash.clone(), id.clone(), purpose.label());
    state
        .try_with_node(move |node, s| -> Result<(), NodeError> {
            let now = node.now(s.clock.as_ref())?;
            Ok(node.store.set_session_purpose(&hash, person.as_str(), &label, now)?)
        })
        .await?;
    Ok(Redirect::to(&format!("/person/{}", id.as_str())).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    place: String,
    #[serde(default)]
    place_name: String,
    #[serde(default)]
    note: String,
}

pub async fn add_event(
    State(state): State<AppState>,
    signed: Signed,
    Path(raw): Path<String>,
    StrictForm(form): StrictForm<EventForm>,
) -> Page {
    signed.check_csrf(&state, &form.csrf).await?;
    let id = person_path(&state, &signed, &raw).await?;
    let input = FieldEventInput { place: form.place, place_name: form.place_name, note: form.note };
    let event = match input.parse() {
        Ok(e) => e,
        Err(e) => return show_person(&state, &signed, &id, Some(&e.to_string())).await,
    };
    let open = open_for(&state, &signed).await?;
    access::record_event(&state, &signed.op, &open, &id, event, "web")
        .await
        .map_err(|r| refused_page(&r, &signed.bar()))?;
    Ok(Redirect::to(&format!("/person/{}#whereabouts", id.as_str())).into_response())
}

pub async fn handover(State(state): State<AppState>, signed: Signed, Path(raw): Path<String>) -> Page {
    let id = person_path(&state, &signed, &raw).await?;
    let open = open_for(&state, &signed).await?;
    let purpose = stated_purpose(&state, &signed, &id).await?;
    let bar = signed.bar();
    let (view, receipt) = access::open_person(&state, &signed.op, &open, &id, &purpose, Action::Print, "web handover")
        .await
        .map_err(|r| refused_page(&r, &bar))?;
    let events = event_views(&view.events);
    let (node_id, now) =
        state.try_with_node(|node, s| node.now(s.clock.as_ref()).map(|now| (node.info.node_id.clone(), now))).await?;
    let by = format!("{}（{}）", signed.op.name, signed.op.role.label());
    let page = views::handover_sheet(
        &signed.chrome(&bar),
        &views::HandoverSheet {
            disclosed: &view.record,
            events: &events,
            purpose: &view.purpose,
            printed_at: &jst(now),
            printed_by: &by,
            node_id: &node_id,
            audit_seq: receipt.seq(),
        },
    );
    Ok(Audited::new(receipt, html(page)).into_response())
}

// ---- the coordinator ----

async fn manage_view(
    state: &AppState,
    message: Option<String>,
    error: Option<String>,
) -> Result<views::ManageView, AppError> {
    state
        .try_with_node(move |node, s| -> Result<views::ManageView, NodeError> {
            let now = node.now(s.clock.as_ref())?;
            let access = node.check_access(s.clock.as_ref());
            // Read after `check_access`, which ends an authorization whose window is over.
            let in_force = node.store.active_authorization()?.map(|row| row.id);
            let staff = node
                .store
                .all_staff()?
                .iter()
                .map(|st| {
                    let allowed = staff::still_allowed(st, in_force.as_deref());
                    let state = match (&st.revoked_at, &allowed) {
                        (Some(at), _) => format!("取り消し済み（{}）", jst(*at)),
                        (None, Err(_)) => "認可終了".to_owned(),
                        (None, Ok(())) if st.secret_hash.is_none() => "有効（コード未使用）".to_owned(),
                        (None, Ok(())) => "有効".to_owned(),
                    };
                    let op = Operator::from(st);
                    views::StaffLine {
                        id: op.id,
                        name: op.name,
                        facility: op.facility,
                        role: op.role,
                        enrolled_at: jst(st.enrolled_at),
                        state,
                        active: st.revoked_at.is_none() && allowed.is_ok(),
                        // The node's first coordinator cannot be revoked (`staff::may_revoke`).
                        revocable: st.authorization_id.is_some() || st.role != Role::Coordinator.name(),
                    }
                })
                .collect();
            let (authorization, facilities) = match &access {
                Ok(row) => {
                    let code = row.code.as_deref().expect("an active authorization keeps its code");
                    let rules = SignedAuthorization::parse(code)?.authorization;
                    let text = format!(
                        "有効：{}（{} まで、ID {} 連番 {}）{}",
                        row.disaster,
                        jst(row.not_after),
                        row.id,
                        row.serial,
                        if row.drill { "・訓練" } else { "" }
                    );
                    (text, describe_facilities(&rules))
                }
                Err(denied) => (denied.to_string(), String::new()),
            };
            Ok(views::ManageView {
                staff,
                authorization,
                authorization_active: access.is_ok(),
                facilities,
                now: jst(now),
                message,
                error,
            })
        })
        .await
}

fn describe_facilities(a: &crate::authz::Authorization) -> String {
    let f = &a.facilities;
    if f.is_empty() { "なし（この認可では職員を登録できません）".to_owned() } else { f.join("、") }
}

/// The management page, with what just happened (`Ok`) or why it could not (`Err`).
async fn manage_page(state: &AppState, c: &Signed, status: StatusCode, outcome: Result<String, String>) -> Page {
    let (message, error) = match outcome {
        Ok(m) => (Some(m), None),
        Err(e) => (None, Some(e)),
    };
    let view = manage_view(state, message, error).await?;
    let bar = c.bar();
    Ok((status, html(views::manage_page(&c.chrome(&bar), &c.session.csrf, &view))).into_response())
}

/// The management page saying what was wrong with the request (400).
async fn manage_refused(state: &AppState, c: &Signed, error: impl Into<String>) -> Page {
    manage_page(state, c, StatusCode::BAD_REQUEST, Err(error.into())).await
}

pub async fn manage(State(state): State<AppState>, Coordinator(c): Coordinator) -> Page {
    let view = manage_view(&state, None, None).await?;
    let bar = c.bar();
    Ok(html(views::manage_page(&c.chrome(&bar), &c.session.csrf, &view)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
    StrictForm(form): StrictForm<EnrolForm>,
) -> Page {
    c.check_csrf(&state, &form.csrf).await?;
    let Some(role) = Role::parse(&form.role) else {
        return manage_refused(&state, &c, "役割を選んでください").await;
    };
    let name = match form.organisation.trim() {
        "" => form.name.trim().to_owned(),
        org => format!("{}（{org}）", form.name.trim()),
    };
    let facility = form.facility.trim().to_owned();
    let (n, f, op) = (name.clone(), facility.clone(), c.op.clone());
    let result = state
        .with_node(move |node, s| node.enrol(&n, &f, role, s.clock.as_ref(), &s.writer, &|a, o, d| op.entry(a, o, d)))
        .await?;
    let enrolled = match result {
        Ok(enrolled) => enrolled,
        Err(e) => return change_refused(&state, &c, e).await,
    };
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
    Ok(html(views::enrolled_page(&c.chrome(&bar), &view)).into_response())
}

pub async fn revoke(
    State(state): State<AppState>,
    Coordinator(c): Coordinator,
    Path(id): Path<String>,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Page {
    c.check_csrf(&state, &form.csrf).await?;
    // The id is checked for its shape before it is used or shown.
    if !staff::is_staff_id(&id) {
        log(&state, c.op.entry(Action::Revoke, Outcome::Failed, "malformed staff id")).await?;
        return manage_page(&state, &c, StatusCode::NOT_FOUND, Err("その職員IDは見つかりません".into())).await;
    }
    let (target, op) = (id.clone(), c.op.clone());
    let revoked = state
        .with_node(move |node, s| {
            node.revoke(&op.id, &target, s.clock.as_ref(), &s.writer, &|a, o, d| op.entry(a, o, d))
        })
        .await?;
    match revoked {
        Ok(true) => {
            let message = format!("{id} の登録を取り消しました。次の操作から使えません。");
            manage_page(&state, &c, StatusCode::OK, Ok(message)).await
        }
        Ok(false) => {
            manage_page(&state, &c, StatusCode::NOT_FOUND, Err(format!("{id} は見つからないか、取り消し済みです")))
                .await
        }
        Err(NodeError::Staff(refused)) => {
            manage_page(&state, &c, StatusCode::FORBIDDEN, Err(refused.to_string())).await
        }
        Err(e) => change_refused(&state, &c, e).await,
    }
}

/// A coordinator's change that did not happen (and was recorded as such): the reason on the
/// page, or, if the node itself failed (its log, its disk), the page that says so.
async fn change_refused(state: &AppState, c: &Signed, e: NodeError) -> Page {
    match e {
        NodeError::Audit(e) => Err(AppError::AuditUnavailable(e.to_string()).into()),
        NodeError::Store(e) => Err(AppError::Internal(e.to_string()).into()),
        e => manage_refused(state, c, e.to_string()).await,
    }
}

pub async fn import_authorization(
    State(state): State<AppState>,
    Coordinator(c): Coordinator,
    mut form: Multipart,
) -> Page {
    let (mut csrf, mut code) = (String::new(), String::new());
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(_) => return manage_refused(&state, &c, "送信内容を読めません。もう一度送ってください").await,
        };
        let name = field.name().unwrap_or("").to_owned();
        let Ok(text) = field.text().await else { break };
        match name.as_str() {
            "csrf" => csrf = text,
            "code" | "file" if !text.trim().is_empty() => code = text,
            "code" | "file" => {}
            _ => {
                return manage_refused(
                    &state,
                    &c,
                    "送信内容に、このフォームにない項目があります。ページを開き直してください",
                )
                .await;
            }
        }
    }
    c.check_csrf(&state, &csrf).await?;
    if code.trim().is_empty() {
        return manage_refused(&state, &c, "認可ファイルを選ぶか、認可コードを貼り付けてください").await;
    }
    let op = c.op.clone();
    let result = state
        .with_node(move |node, s| {
            node.import_authorization(code.trim(), &s.secret, s.clock.as_ref(), &s.writer, &|a, o, d| op.entry(a, o, d))
        })
        .await?;
    let message = match result {
        Ok(ImportOutcome::Activated { until, .. }) => {
            format!("認可を取り込みました。{} まで検索できます。", jst(until))
        }
        Ok(ImportOutcome::Closed { .. }) => {
            state.gate.close();
            "認可は中央によって終了されました。検索はできません。".to_owned()
        }
        Err(e) => return change_refused(&state, &c, e).await,
    };
    manage_page(&state, &c, StatusCode::OK, Ok(message)).await
}

pub async fn close_authorization(
    State(state): State<AppState>,
    Coordinator(c): Coordinator,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Page {
    c.check_csrf(&state, &form.csrf).await?;
    let op = c.op.clone();
    let closed = state
        .try_with_node(move |node, s| {
            node.close_authorization(s.clock.as_ref(), &s.writer, &|a, o, d| op.entry(a, o, d))
        })
        .await;
    state.gate.close();
    let closed = closed?;
    let message = match closed {
        Some(id) => format!("認可 {id} を終了しました。検索はできません。"),
        None => "有効な認可はありませんでした。".to_owned(),
    };
    manage_page(&state, &c, StatusCode::OK, Ok(message)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
    /// "yes" once the coordinator has seen the question page.
    #[serde(default)]
    confirm: String,
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
    StrictForm(form): StrictForm<ClockForm>,
) -> Page {
    c.check_csrf(&state, &form.csrf).await?;
    let Some(to) = parse_local_jst(&form.to) else {
        return manage_refused(&state, &c, "時刻を「年-月-日 時:分」で入力してください").await;
    };
    if form.confirm != "yes" {
        // First the question: a wrong year moves the node past every authorization's end.
        let checked = state.with_node(move |node, s| node.check_clock_move(to, s.clock.as_ref())).await?;
        let now = match checked {
            Ok(now) => now,
            Err(e) => return manage_refused(&state, &c, e.to_string()).await,
        };
        let bar = c.bar();
        let question = views::ClockQuestion {
            now: jst(now),
            to: jst(to),
            step: views::duration_words(to - now),
            value: form.to.trim().to_owned(),
        };
        return Ok(html(views::clock_confirm_page(&c.chrome(&bar), &c.session.csrf, &question)).into_response());
    }
    let op = c.op.clone();
    let moved = state
        .with_node(move |node, s| {
            node.move_clock_forward(to, s.clock.as_ref(), &s.writer, &|a, o, d| op.entry(a, o, d))
        })
        .await?;
    match moved {
        Ok(before) => {
            let message = format!("時計を {} から {} に進めました。", jst(before), jst(to));
            manage_page(&state, &c, StatusCode::OK, Ok(message)).await
        }
        Err(e) => change_refused(&state, &c, e).await,
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
) -> Page {
    let person = p.person.trim().to_owned();
    let subject = match person.as_str() {
        "" => None,
        id => match crate::model::PersonId::parse(id) {
            Ok(id) => Some(id),
            Err(_) => return manage_refused(&state, &c, "個人IDは32桁の英数字（小文字）です").await,
        },
    };
    let filter = subject.clone();
    let entries = state
        .try_with_node(move |node, _| match filter {
            None => node.store.audit_page(p.before, AUDIT_PAGE_ENTRIES),
            Some(id) => node.store.audit_entries_for(id.as_str()).map(|mut e| {
                e.reverse();
                e
            }),
        })
        .await?;
    // Reading the log, and above all one person's history, is itself an access.
    let detail = if subject.is_some() { "person access history" } else { "audit log" };
    let mut entry = c.op.entry(Action::View, Outcome::Ok, detail);
    entry.subjects = subject.iter().cloned().collect();
    let receipt = log(&state, entry).await?;
    let older =
        (subject.is_none() && entries.len() == AUDIT_PAGE_ENTRIES).then(|| entries.last().map(|e| e.seq)).flatten();
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
    let page = views::audit_page(&c.chrome(&bar), subject.as_ref().map(|id| id.as_str()), &lines, older);
    Ok(Audited::new(receipt, html(page)).into_response())
}
