//! Enrolled staff: who may search, for which facility and in which role, and the secrets they
//! hold (a one-time login code for the web app, an API bearer token). Secrets are shown once and
//! stored only hashed: the token with SHA-256 (32 random bytes need no slow hash), the short
//! login code with Argon2id.

use argon2::password_hash::SaltString;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::authz::{Authorization, Role};
use crate::limits::{
    LOGIN_ACCOUNT_FAILURES_FREE, LOGIN_BACKOFF_BASE_SECONDS, LOGIN_BACKOFF_SECONDS_MAX, SECRET_PASSPHRASE_CHARS_MIN,
    SECRET_PIN_DIGITS_MIN, SESSION_IDLE_SECONDS, SESSION_MAX_SECONDS, SESSION_TOUCH_SECONDS,
};
use crate::model::OfficeNumber;
use crate::store::{SessionRow, StaffRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error(
        "事業所番号 {0} はこの災害認可の対象事業所ではありません。対象か確かめ、必要なら中央に認可の変更を依頼してください"
    )]
    FacilityNotAllowed(String),
    #[error("有効な災害認可がないため職員を登録できません。先に認可を取り込んでください")]
    NoAuthorization,
    #[error("名前を入力してください")]
    NoName,
    #[error(
        "PIN は数字{SECRET_PIN_DIGITS_MIN}桁以上（同じ数字の繰り返しや連番は不可）、パスフレーズは{SECRET_PASSPHRASE_CHARS_MIN}文字以上にしてください"
    )]
    WeakSecret,
    #[error("自分自身の登録は取り消せません")]
    RevokeSelf,
    #[error("ノードの最初のコーディネーターは取り消せません（ノードを動かし続けるための登録です）")]
    RevokeFirstCoordinator,
    #[error("名前に{0}")]
    Control(#[from] crate::model::text::ControlCharacter),
    #[error(transparent)]
    Facility(#[from] crate::model::IdError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What enrolment hands the person, once.
pub struct Enrolled {
    pub id: String,
    pub login_code: Zeroizing<String>,
    pub token: Zeroizing<String>,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Enrolled({})", self.id)
    }
}

/// SHA-256 of an API token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

fn random_code(alphabet: &[u8], len: usize) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(len));
    let mut b = [0u8; 1];
    while out.len() < len {
        OsRng.fill_bytes(&mut b);
        // Rejection sampling keeps every symbol equally likely.
        let limit = 256 - 256 % alphabet.len();
        if usize::from(b[0]) < limit {
            out.push(char::from(alphabet[usize::from(b[0]) % alphabet.len()]));
        }
    }
    out
}

/// Enrols an operator under the authorization in force. Support and receiving staff need a
/// facility the authorization allows; a coordinator may have none. Their access ends with that
/// authorization.
pub fn add(
    store: &Store,
    authorization: Option<&Authorization>,
    name: &str,
    facility: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<Enrolled, StaffError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StaffError::NoName);
    }
    let authorization = authorization.ok_or(StaffError::NoAuthorization)?;
    let facility = if facility.trim().is_empty() && role == Role::Coordinator {
        String::new()
    } else {
        let office = OfficeNumber::parse(facility.trim())?;
        if !authorization.allows_facility(office.as_str()) {
            return Err(StaffError::FacilityNotAllowed(office.to_string()));
        }
        office.to_string()
    };
    // Easy to read out and type: no 0/O, 1/I.
    let login_code = random_code(CODE_ALPHABET, LOGIN_CODE_CHARS);
    insert(store, name, &facility, role, Secret::OneTimeCode(&login_code), Some(&authorization.id), now)
        .map(|(id, token)| Enrolled { id, login_code, token })
}

/// The coordinator made at `node init`: signs in with the passphrase they chose (or were given)
/// and works without an authorization, seeing no personal data until one is active.
pub fn add_first_coordinator(
    store: &Store,
    name: &str,
    passphrase: &str,
    now: DateTime<Utc>,
) -> Result<(String, Zeroizing<String>), StaffError> {
    check_new_secret(passphrase)?;
    insert(store, name.trim(), "", Role::Coordinator, Secret::Chosen(passphrase), None, now)
}

enum Secret<'a> {
    OneTimeCode(&'a str),
    Chosen(&'a str),
}

fn insert(
    store: &Store,
    name: &str,
    facility: &str,
    role: Role,
    secret: Secret<'_>,
    authorization_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(String, Zeroizing<String>), StaffError> {
    if name.is_empty() {
        return Err(StaffError::NoName);
    }
    let name = crate::model::text::clean(name, false)?;
    let name = name.as_ref();
    // Random, so that nobody can guess the next id (or lock out a sequence of them).
    let id = loop {
        let raw = random_code(CODE_ALPHABET, STAFF_ID_CHARS);
        let id = format!("{}-{}", &raw[..STAFF_ID_CHARS / 2], &raw[STAFF_ID_CHARS / 2..]);
        if store.staff(&id)?.is_none() {
            break id;
        }
    };
    let mut raw = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut *raw);
    let token = Zeroizing::new(format!("kft_{}", hex::encode(*raw)));
    let (login_code_hash, secret_hash) = match secret {
        Secret::OneTimeCode(code) => (Some(hash_secret(&normalize_code(code))), None),
        Secret::Chosen(s) => (None, Some(hash_secret(s))),
    };
    store.add_staff(&StaffRow {
        id: id.clone(),
        name: name.to_owned(),
        facility: facility.to_owned(),
        role: role.name().to_owned(),
        login_code_hash,
        token_hash: token_hash(&token),
        enrolled_at: now,
        revoked_at: None,
        secret_hash,
        failures: 0,
        locked_until: None,
        authorization_id: authorization_id.map(str::to_owned),
    })?;
    Ok((id, token))
}

const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// A staff id is this many symbols of `CODE_ALPHABET` (40 bits), shown as `XXXX-XXXX`.
const STAFF_ID_CHARS: usize = 8;
const LOGIN_CODE_CHARS: usize = 10;

/// A code as typed: spaces, hyphens and case do not matter; full-width letters are folded.
fn normalize_code(code: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    code.nfkc().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

/// The Argon2id PHC string of `secret` with a fresh salt and the default parameters, computed
/// in this thread's kept buffer (see `secret_matches` for why).
fn hash_secret(secret: &str) -> String {
    use argon2::password_hash::{Output, PasswordHash};
    let salt = SaltString::generate(&mut OsRng);
    let params = argon2::Params::default();
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params.clone());
    let mut salt_bytes = [0u8; argon2::password_hash::Salt::MAX_LENGTH];
    let raw_salt = salt.decode_b64(&mut salt_bytes).expect("a generated salt decodes");
    let mut out = Zeroizing::new([0u8; argon2::Params::DEFAULT_OUTPUT_LEN]);
    with_argon2_memory(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(secret.as_bytes(), raw_salt, out.as_mut_slice(), blocks)
    })
    .expect("Argon2 hashes a short secret with default parameters");
    PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: (&params).try_into().expect("default parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(out.as_slice()).expect("a 32-byte output")),
    }
    .to_string()
}

/// Whether `secret` is the one `hash` (an Argon2id PHC string) was made from. Argon2 works in a
/// buffer kept by the calling thread and reused (see `with_argon2_memory`), so checking
/// sign-ins never allocates and frees its 19 MiB again and again: a freed block of that size
/// stays in the allocator's arena of whichever thread freed it, and memory grew with every
/// arena touched.
fn secret_matches(secret: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordHash;
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Ok(algorithm), Ok(params)) =
        (argon2::Algorithm::try_from(parsed.algorithm), argon2::Params::try_from(&parsed))
    else {
        return false;
    };
    let version = parsed.version.map_or(Ok(argon2::Version::default()), argon2::Version::try_from);
    let (Ok(version), Some(salt), Some(expected)) = (version, parsed.salt, parsed.hash) else { return false };
    let mut salt_bytes = [0u8; argon2::password_hash::Salt::MAX_LENGTH];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    let argon2 = argon2::Argon2::new(algorithm, version, params.clone());
    let computed = with_argon2_memory(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(secret.as_bytes(), salt, &mut out, blocks)
    });
    computed.is_ok() && bool::from(subtle::ConstantTimeEq::ct_eq(out.as_slice(), expected.as_bytes()))
}

/// Runs `f` with `blocks` Argon2 memory blocks that this thread allocated once and keeps. The
/// sign-in hashing threads (`throttle`) are few and fixed, so this bounds sign-in's memory.
fn with_argon2_memory<T>(blocks: usize, f: impl FnOnce(&mut [argon2::Block]) -> T) -> T {
    thread_local! {
        static MEMORY: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::default());
        }
        f(&mut memory[..blocks])
    })
}

/// A PIN (digits) or a passphrase the person chooses after the one-time code.
pub fn check_new_secret(secret: &str) -> Result<(), StaffError> {
    let chars = secret.chars().count();
    let digits_only = secret.chars().all(|c| c.is_ascii_digit());
    if digits_only {
        let bytes = secret.as_bytes();
        let same = bytes.iter().all(|&b| b == bytes[0]);
        let ascending = bytes.windows(2).all(|w| w[1] == w[0] + 1);
        let descending = bytes.windows(2).all(|w| w[0] == w[1] + 1);
        if chars < SECRET_PIN_DIGITS_MIN || same || ascending || descending {
            return Err(StaffError::WeakSecret);
        }
    } else if chars < SECRET_PASSPHRASE_CHARS_MIN {
        return Err(StaffError::WeakSecret);
    }
    Ok(())
}

/// What a correct sign-in leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedIn {
    /// Signed in with the one-time code: the person must set a PIN or passphrase next.
    MustSetSecret,
    Ready,
}

/// Why a sign-in failed. A wrong id and a wrong secret read alike; a locked or revoked account
/// says so, because the person at the desk needs to know what to do (which tells a guesser the
/// id exists, a trade accepted on a shelter's own network with lockout in place).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("職員IDかコード（PIN・パスフレーズ）が違います")]
    Wrong,
    /// This client address has failed too often for this id (or for any id).
    #[error(
        "間違いが続いたため、この端末からは {until} までログインできません。急ぐときは別の端末を使うか、コーディネーターに相談してください"
    )]
    Locked { until: String },
    /// The account has failed many times from anywhere, or a sign-in to it is being checked now.
    #[error("この職員IDへのログインが続いています。{seconds}秒ほど待ってから、もう一度入力してください")]
    Wait { seconds: i64 },
    /// The node is checking as many sign-ins as it can at once.
    #[error("ログインが混み合っています。数秒待ってから、もう一度入力してください")]
    Busy,
    #[error("この職員の登録は取り消されています。コーディネーターに相談してください")]
    Revoked,
    #[error(
        "登録したときの災害認可が終わったため、この職員のアクセスは終了しました。コーディネーターに再登録を依頼してください"
    )]
    AuthorizationEnded,
}

/// Checks a sign-in attempt against a stored operator (argon2: run it off the async runtime,
/// and without holding the node). `None` for an unknown id. Revocation is checked before the
/// secret; how often one may try is `throttle`'s and `Store::claim_login`'s to decide, before this
/// runs.
pub fn check_login(staff: Option<&StaffRow>, secret: &str) -> Result<SignedIn, LoginError> {
    let Some(staff) = staff else {
        // Spend the same effort as for a real account.
        let _ = secret_matches(secret, DUMMY_HASH);
        return Err(LoginError::Wrong);
    };
    if staff.revoked_at.is_some() {
        return Err(LoginError::Revoked);
    }
    match (&staff.secret_hash, &staff.login_code_hash) {
        (Some(hash), _) if secret_matches(secret, hash) => Ok(SignedIn::Ready),
        (None, Some(hash)) if secret_matches(&normalize_code(secret), hash) => Ok(SignedIn::MustSetSecret),
        _ => Err(LoginError::Wrong),
    }
}

/// How long an account must rest after its `failures`-th failure in a row (from anywhere), if
/// at all: nothing for the first `LOGIN_ACCOUNT_FAILURES_FREE`, then a backoff that doubles up
/// to a cap, so that guessing from many addresses is slow and the holder is never locked out
/// for long.
pub fn login_backoff(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(LOGIN_ACCOUNT_FAILURES_FREE)?;
    let seconds = LOGIN_BACKOFF_BASE_SECONDS.saturating_mul(1_i64 << over.min(20));
    Some(Duration::seconds(seconds.min(LOGIN_BACKOFF_SECONDS_MAX)))
}

/// A staff id as typed: full-width letters folded, case and spaces ignored, the hyphen of
/// `XXXX-XXXX` put back if left out. Ids of the old form (`staff-N`) pass through lower-cased.
pub fn normalize_id(typed: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let folded: String = typed.nfkc().filter(|c| !c.is_whitespace()).collect();
    if folded.to_ascii_lowercase().starts_with("staff-") {
        return folded.to_ascii_lowercase();
    }
    let plain: String = folded.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).collect();
    if plain.len() == STAFF_ID_CHARS && folded.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        format!("{}-{}", &plain[..STAFF_ID_CHARS / 2], &plain[STAFF_ID_CHARS / 2..])
    } else {
        folded
    }
}

/// Whether `id` has the shape of a staff id (the random `XXXX-XXXX`, or `staff-N` of nodes
/// enrolled before ids were random). Path segments are checked with this before anything else.
pub fn is_staff_id(id: &str) -> bool {
    let random = id.len() == STAFF_ID_CHARS + 1
        && id
            .bytes()
            .enumerate()
            .all(|(i, b)| if i == STAFF_ID_CHARS / 2 { b == b'-' } else { CODE_ALPHABET.contains(&b) });
    let legacy = id
        .strip_prefix("staff-")
        .is_some_and(|n| !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()));
    random || legacy
}

/// Whether `actor` may revoke `target`: never oneself, and never the node's first coordinator
/// (made at `node init`, enrolled under no authorization), who must always be able to run the
/// node; there is no un-revoke.
pub fn may_revoke(actor: &str, target: &StaffRow) -> Result<(), StaffError> {
    if target.id == actor {
        return Err(StaffError::RevokeSelf);
    }
    if target.authorization_id.is_none() && target.role == Role::Coordinator.name() {
        return Err(StaffError::RevokeFirstCoordinator);
    }
    Ok(())
}

/// A well-formed Argon2id hash of nothing anyone knows, for unknown ids.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J0fYGmrAc6I0o2qwCeVn8hQBIC2VKPvs4Sc6H3FyAA0";

/// Hashes a PIN or passphrase the person chose, after checking it.
pub fn new_secret_hash(secret: &str) -> Result<String, StaffError> {
    check_new_secret(secret)?;
    Ok(hash_secret(secret))
}

/// Whether an operator may act now: not revoked, and the authorization they were enrolled
/// under (if any) is the one in force.
pub fn still_allowed(staff: &StaffRow, active_authorization: Option<&str>) -> Result<(), LoginError> {
    if staff.revoked_at.is_some() {
        return Err(LoginError::Revoked);
    }
    match &staff.authorization_id {
        None => Ok(()),
        Some(id) if Some(id.as_str()) == active_authorization => Ok(()),
        Some(_) => Err(LoginError::AuthorizationEnded),
    }
}

/// Where a session stands at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAge {
    Fresh,
    /// Still valid; its last-seen time is old enough to be written again.
    Touch,
    /// Idle too long, or older than a shift: sign in again.
    Expired,
}

pub fn session_age(session: &SessionRow, now: DateTime<Utc>) -> SessionAge {
    let idle = now - session.last_seen;
    if idle > Duration::seconds(SESSION_IDLE_SECONDS)
        || now - session.created_at > Duration::seconds(SESSION_MAX_SECONDS)
    {
        SessionAge::Expired
    } else if idle > Duration::seconds(SESSION_TOUCH_SECONDS) {
        SessionAge::Touch
    } else {
        SessionAge::Fresh
    }
}

/// A new random secret for a cookie or a CSRF token: 32 bytes, hex.
pub fn random_token() -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut *raw);
    Zeroizing::new(hex::encode(*raw))
}

/// A passphrase for the first coordinator when none is given: five groups of four, easy to
/// copy from a screen.
pub fn generated_passphrase() -> Zeroizing<String> {
    let raw = random_code(CODE_ALPHABET, 20);
    let groups: Vec<&str> = (0..5).map(|i| &raw[i * 4..i * 4 + 4]).collect();
    Zeroizing::new(groups.join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(secret_hash: Option<String>, login_code_hash: Option<String>) -> StaffRow {
        StaffRow {
            id: "staff-1".into(),
            name: "能登 花子".into(),
            facility: "1772090005".into(),
            role: "support".into(),
            login_code_hash,
            token_hash: "x".into(),
            enrolled_at: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
            revoked_at: None,
            secret_hash,
            failures: 0,
            locked_until: None,
            authorization_id: Some("a1".into()),
        }
    }

    #[test]
    fn the_one_time_code_leads_to_setting_a_secret_and_the_secret_to_work() {
        let staff = row(None, Some(hash_secret("ABCDE23456")));
        assert_eq!(check_login(Some(&staff), "abcde-23456"), Ok(SignedIn::MustSetSecret));
        assert_eq!(check_login(Some(&staff), "ＡＢＣＤＥ２３４５６"), Ok(SignedIn::MustSetSecret));
        assert!(matches!(check_login(Some(&staff), "ABCDE23457"), Err(LoginError::Wrong)));
        let staff = row(Some(new_secret_hash("240815").unwrap()), None);
        assert_eq!(check_login(Some(&staff), "240815"), Ok(SignedIn::Ready));
        assert!(matches!(check_login(Some(&staff), "ABCDE23456"), Err(LoginError::Wrong)));
        assert!(matches!(check_login(None, "240815"), Err(LoginError::Wrong)));
    }

    #[test]
    fn revoked_accounts_are_refused_before_the_secret_is_checked() {
        let mut staff = row(Some(hash_secret("240815")), None);
        staff.revoked_at = Some(DateTime::from_timestamp(1_790_000_100, 0).unwrap());
        assert_eq!(check_login(Some(&staff), "240815"), Err(LoginError::Revoked));
    }

    #[test]
    fn the_account_backoff_starts_late_doubles_and_is_capped() {
        for f in 0..=LOGIN_ACCOUNT_FAILURES_FREE - 1 {
            assert_eq!(login_backoff(f), None, "{f}");
        }
        assert_eq!(login_backoff(LOGIN_ACCOUNT_FAILURES_FREE), Some(Duration::seconds(LOGIN_BACKOFF_BASE_SECONDS)));
        assert_eq!(
            login_backoff(LOGIN_ACCOUNT_FAILURES_FREE + 1),
            Some(Duration::seconds(2 * LOGIN_BACKOFF_BASE_SECONDS))
        );
        assert_eq!(login_backoff(u32::MAX), Some(Duration::seconds(LOGIN_BACKOFF_SECONDS_MAX)));
    }

    #[test]
    fn staff_ids_are_random_typed_loosely_and_checked_by_shape() {
        let a = random_code(CODE_ALPHABET, STAFF_ID_CHARS);
        let id = format!("{}-{}", &a[..4], &a[4..]);
        assert!(is_staff_id(&id), "{id}");
        assert_eq!(normalize_id(&id.to_ascii_lowercase().replace('-', "")), id);
        assert_eq!(normalize_id(" ｋ７ｑｍ－３ｘｄａ "), "K7QM-3XDA");
        assert_eq!(normalize_id("Staff-12"), "staff-12");
        for bad in ["", "..%2F", "../manage", "K7QM3XDA", "K7QM-3XD0", "staff-", "staff-1x", "K7QM-3XDA?"] {
            assert!(!is_staff_id(bad), "{bad}");
        }
        assert!(is_staff_id("staff-12"));
    }

    #[test]
    fn nobody_revokes_themselves_or_the_first_coordinator() {
        let enrolled = row(None, None);
        assert!(may_revoke("K7QM-3XDA", &enrolled).is_ok());
        assert!(matches!(may_revoke(&enrolled.id, &enrolled), Err(StaffError::RevokeSelf)));
        let first = StaffRow { authorization_id: None, role: "coordinator".into(), ..row(None, None) };
        assert!(matches!(may_revoke("K7QM-3XDA", &first), Err(StaffError::RevokeFirstCoordinator)));
    }

    #[test]
    fn weak_pins_and_short_passphrases_are_refused() {
        for weak in ["12345", "000000", "123456", "987654", "short"] {
            assert!(check_new_secret(weak).is_err(), "{weak}");
        }
        for ok in ["240815", "のとはなこ元気です", "correct horse"] {
            assert!(check_new_secret(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn access_ends_with_the_authorization_enrolled_under() {
        let staff = row(None, None);
        assert_eq!(still_allowed(&staff, Some("a1")), Ok(()));
        assert_eq!(still_allowed(&staff, Some("a2")), Err(LoginError::AuthorizationEnded));
        assert_eq!(still_allowed(&staff, None), Err(LoginError::AuthorizationEnded));
        let first_coordinator = StaffRow { authorization_id: None, ..row(None, None) };
        assert_eq!(still_allowed(&first_coordinator, None), Ok(()));
    }

    #[test]
    fn a_session_ends_after_idling_or_a_shift_and_is_touched_sparingly() {
        let start = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let session = |created: i64, seen: i64| SessionRow {
            token_hash: "h".into(),
            staff_id: "staff-1".into(),
            csrf: "c".into(),
            created_at: start + Duration::seconds(created),
            last_seen: start + Duration::seconds(seen),
        };
        let at = |s: i64| start + Duration::seconds(s);
        assert_eq!(session_age(&session(0, 0), at(5)), SessionAge::Fresh);
        assert_eq!(session_age(&session(0, 0), at(SESSION_TOUCH_SECONDS + 1)), SessionAge::Touch);
        assert_eq!(session_age(&session(0, 0), at(SESSION_IDLE_SECONDS)), SessionAge::Touch);
        assert_eq!(session_age(&session(0, 0), at(SESSION_IDLE_SECONDS + 1)), SessionAge::Expired);
        let busy = session(0, SESSION_MAX_SECONDS - 10);
        assert_eq!(session_age(&busy, at(SESSION_MAX_SECONDS - 5)), SessionAge::Fresh);
        assert_eq!(session_age(&busy, at(SESSION_MAX_SECONDS + 1)), SessionAge::Expired, "a shift ends");
    }

    #[test]
    fn the_dummy_hash_parses() {
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
