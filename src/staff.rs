//! Enrolled staff: who may search, for which facility and in which role, and the secrets they
//! hold (a one-time login code for the web app, an API bearer token). Secrets are shown once and
//! stored only hashed: the token with SHA-256 (32 random bytes need no slow hash), the short
//! login code with Argon2id.

use argon2::password_hash::{PasswordHasher, SaltString};
use chrono::{DateTime, Utc};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::authz::{Authorization, Role};
use crate::model::OfficeNumber;
use crate::store::{StaffRow, Store, StoreError};

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

/// Enrols an operator for a facility the authorization in force allows.
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
    let office = OfficeNumber::parse(facility.trim())?;
    let authorization = authorization.ok_or(StaffError::NoAuthorization)?;
    if !authorization.allows_facility(office.as_str()) {
        return Err(StaffError::FacilityNotAllowed(office.to_string()));
    }
    let id = format!("staff-{}", store.staff_count()? + 1);
    // Easy to read out and type: no 0/O, 1/I.
    let login_code = random_code(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 10);
    let mut raw = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut *raw);
    let token = Zeroizing::new(format!("kft_{}", hex::encode(*raw)));
    let salt = SaltString::generate(&mut OsRng);
    let login_code_hash = argon2::Argon2::default()
        .hash_password(login_code.as_bytes(), &salt)
        .expect("Argon2 hashes a 10-character code with default parameters")
        .to_string();
    store.add_staff(&StaffRow {
        id: id.clone(),
        name: name.to_owned(),
        facility: office.to_string(),
        role: role.name().to_owned(),
        login_code_hash: Some(login_code_hash),
        token_hash: token_hash(&token),
        enrolled_at: now,
        revoked_at: None,
    })?;
    Ok(Enrolled { id, login_code, token })
}
