//! Disaster-area authorizations: the signed, time-limited, scoped permission that is the only way
//! a node's data key reaches it. Format, text code, and the pure decision function.
//!
//! An authorization travels as one text code (`KFA1-…`): in a `.kfauth` file, read out, pasted
//! from a phone message, or in a QR code. The code is base32 of the postcard-encoded
//! `Authorization`, its Ed25519 signature and a 4-byte checksum, grouped by five characters.
//! Nothing here reads a clock or a file: `decide` takes the time and the node's state as values,
//! so every rule is tested by a table.

use std::fmt;

use chrono::{DateTime, Utc};
use data_encoding::BASE32_NOPAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{CentralPublicKey, CentralSigningKey};
use crate::model::MunicipalityCode;
use crate::snapshot::Manifest;

pub const CODE_PREFIX: &str = "KFA1";
const SIGNATURE_DOMAIN: &[u8] = b"kaigo-field/authorization/v1\0";
const CHECKSUM_BYTES: usize = 4;
const GROUP: usize = 5;

/// Who uses the node, and so which sections of a record they may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Outside support staff at a shelter (DWAT, care managers from elsewhere).
    Support,
    /// Staff of a facility receiving residents.
    Receiving,
    /// The person who runs the node.
    Coordinator,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Support, Role::Receiving, Role::Coordinator];

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "support" => Some(Role::Support),
            "receiving" => Some(Role::Receiving),
            "coordinator" => Some(Role::Coordinator),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Support => "support",
            Role::Receiving => "receiving",
            Role::Coordinator => "coordinator",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Support => "支援職員",
            Role::Receiving => "受入施設職員",
            Role::Coordinator => "コーディネーター",
        }
    }
}

/// Parts of a person record, shown or withheld by role (the sharing table of MHLW 介護保険部会 資料7, 2025-07-28).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Section {
    /// 被保険者証: identifiers, name, birth date, sex.
    Card,
    /// 住所 and 電話.
    Contact,
    /// 要介護状態区分, its period and 区分支給限度基準額.
    Certification,
    /// 負担割合 and 負担限度額: not for medical users who provide no care.
    Burden,
    /// 居宅介護支援事業者 and the care manager.
    CareManager,
    /// 主治医意見書 highlights: diagnoses, 特別な医療, 自立度, medication, infection, allergies.
    MedicalOpinion,
    /// ケアプラン 第1–3表.
    CarePlan,
    /// LIFE ADL (Barthel Index).
    Adl,
    /// 福祉用具 and 住宅改修.
    Equipment,
}

impl Section {
    pub const ALL: [Section; 9] = [
        Section::Card,
        Section::Contact,
        Section::Certification,
        Section::Burden,
        Section::CareManager,
        Section::MedicalOpinion,
        Section::CarePlan,
        Section::Adl,
        Section::Equipment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::Card => "card",
            Section::Contact => "contact",
            Section::Certification => "certification",
            Section::Burden => "burden",
            Section::CareManager => "care_manager",
            Section::MedicalOpinion => "medical_opinion",
            Section::CarePlan => "care_plan",
            Section::Adl => "adl",
            Section::Equipment => "equipment",
        }
    }

    pub fn parse(s: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// The sections each role may see unless an authorization says otherwise: shelter support staff
/// see what they need to care for someone but not their 負担割合; receiving facilities see all;
/// the coordinator sees only enough to identify and hand on.
pub fn default_sections() -> Vec<(Role, Vec<Section>)> {
    use Section::*;
    vec![
        (Role::Support, vec![Card, Contact, Certification, CareManager, MedicalOpinion, CarePlan, Adl, Equipment]),
        (Role::Receiving, Section::ALL.to_vec()),
        (Role::Coordinator, vec![Card, Certification, CareManager]),
    ]
}

/// The data key of one snapshot, sealed (X25519 sealed box) for one node's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGrant {
    pub node_id: String,
    pub wrapped_key: Vec<u8>,
}

/// What the central signs. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub id: String,
    pub serial: u32,
    pub issued_at: i64,
    pub disaster: String,
    pub municipalities: Vec<MunicipalityCode>,
    /// 事業所番号 in full, or a prefix ending in `*` ("17*": every facility of 石川県).
    pub facilities: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    /// The snapshot whose data key the grants carry.
    pub snapshot_id: [u8; 16],
    pub central_key_id: [u8; 8],
    pub nodes: Vec<NodeGrant>,
    pub sections: Vec<(Role, Vec<Section>)>,
    pub drill: bool,
}

fn ts(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Authorization {
    pub fn not_before(&self) -> DateTime<Utc> {
        ts(self.not_before)
    }
    pub fn not_after(&self) -> DateTime<Utc> {
        ts(self.not_after)
    }
    pub fn issued_at(&self) -> DateTime<Utc> {
        ts(self.issued_at)
    }
    pub fn snapshot_id_hex(&self) -> String {
        hex::encode(self.snapshot_id)
    }

    pub fn grant_for(&self, node_id: &str) -> Option<&NodeGrant> {
        self.nodes.iter().find(|g| g.node_id == node_id)
    }

    /// Whether a person of this municipality may be found and read under this authorization:
    /// the disaster special measure covers only the 災害救助法 areas it lists.
    pub fn covers_municipality(&self, code: &str) -> bool {
        self.municipalities.iter().any(|m| m.as_str() == code)
    }

    /// Whether a facility (事業所番号) is allowed by the rules.
    /// The sections `role` may see under this authorization (none if it names the role not).
    pub fn sections_for(&self, role: Role) -> &[Section] {
        self.sections.iter().find(|(r, _)| *r == role).map_or(&[], |(_, s)| s.as_slice())
    }

    pub fn allows_facility(&self, office: &str) -> bool {
        self.facilities.iter().any(|rule| match rule.strip_suffix('*') {
            Some(prefix) => office.starts_with(prefix),
            None => office == rule,
        })
    }

    /// Signs and encodes as a text code.
    pub fn sign(&self, key: &CentralSigningKey) -> String {
        let payload = postcard::to_stdvec(self).expect("an authorization serializes");
        let signature = key.sign(&[SIGNATURE_DOMAIN, &payload].concat());
        let mut blob = [payload.as_slice(), &signature].concat();
        let check = Sha256::digest(&blob);
        blob.extend_from_slice(&check[..CHECKSUM_BYTES]);
        let body = BASE32_NOPAD.encode(&blob);
        let groups: Vec<&str> =
            body.as_bytes().chunks(GROUP).map(|c| std::str::from_utf8(c).expect("base32 is ASCII")).collect();
        format!("{CODE_PREFIX}-{}", groups.join("-"))
    }
}

/// A decoded code: the authorization, and what its signature covers.
#[derive(Debug, Clone)]
pub struct SignedAuthorization {
    pub authorization: Authorization,
    payload: Vec<u8>,
    signature: [u8; 64],
}

impl SignedAuthorization {
    /// Decodes a text code as people type or paste it: any case, spaces, line breaks and hyphens
    /// anywhere, 0/1/8 read as O/I/B. The checksum catches a mistyped character.
    pub fn parse(text: &str) -> Result<SignedAuthorization, Refusal> {
        let cleaned: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != 'ー' && *c != '－')
            .map(|c| match c.to_ascii_uppercase() {
                '0' => 'O',
                '1' => 'I',
                '8' => 'B',
                other => other,
            })
            .collect();
        // "KFA1" itself went through the substitution above.
        let Some(body) = cleaned.strip_prefix("KFAI") else {
            return Err(Refusal::Malformed("認可コードは KFA1- で始まります".into()));
        };
        let cut = || Refusal::Malformed("文字数が合いません（途中で切れているか、余分な文字があります）".into());
        let blob = BASE32_NOPAD.decode(body.as_bytes()).map_err(|e| match e.kind {
            data_encoding::DecodeKind::Length | data_encoding::DecodeKind::Trailing => cut(),
            _ => Refusal::Malformed("使えない文字があります（使えるのは英字 A〜Z と数字 2〜7）".into()),
        })?;
        if blob.len() < 64 + CHECKSUM_BYTES + 1 {
            return Err(cut());
        }
        let (signed, check) = blob.split_at(blob.len() - CHECKSUM_BYTES);
        if Sha256::digest(signed)[..CHECKSUM_BYTES] != *check {
            return Err(Refusal::Malformed("チェックサムが合いません（写し間違い・入力間違いがあります）".into()));
        }
        let (payload, signature) = signed.split_at(signed.len() - 64);
        let authorization: Authorization = postcard::from_bytes(payload).map_err(|_| {
            Refusal::Malformed("内容を読めません（この kaigo-field より新しい形式かもしれません）".into())
        })?;
        Ok(SignedAuthorization {
            authorization,
            payload: payload.to_vec(),
            signature: signature.try_into().expect("64 bytes split off above"),
        })
    }

    pub fn signature_valid(&self, key: &CentralPublicKey) -> bool {
        key.verify(&[SIGNATURE_DOMAIN, &self.payload].concat(), &self.signature)
    }
}

/// Why an authorization is not taken. Each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("認可コードが読めません: {0}。もう一度、正確に入力するか貼り付けてください")]
    Malformed(String),
    #[error("認可の署名が正しくありません（偽造または改変）。中央に正しい認可を出し直してもらってください")]
    ForgedSignature,
    #[error(
        "この認可は別の中央の鍵（鍵ID {got}）で発行されています。このノードが信頼する中央は {expected} です。正しい中央の認可か確かめてください"
    )]
    WrongCentralKey { got: String, expected: String },
    #[error("この認可にはこのノード（{0}）が含まれていません。このノードのIDを伝えて、認可に加えてもらってください")]
    NodeNotListed(String),
    #[error("この認可はまだ有効ではありません（{0} から）。その時刻を過ぎてから取り込んでください")]
    NotYetValid(String),
    #[error("この認可は期限切れです（{0} まで）。延長した新しい認可を中央に依頼してください")]
    Expired(String),
    #[error(
        "この認可（連番 {offered}）は、すでに受け取った連番 {seen} より古いものです。最新の認可を取り込んでください"
    )]
    OlderSerial { offered: u32, seen: u32 },
    #[error(
        "認可の対象市区町村（{0}）がこのノードのスナップショットに含まれていません。対象地域のスナップショットを取り込むか、中央に確認してください"
    )]
    RegionMismatch(String),
    #[error(
        "この認可は別のスナップショット（{wanted}）の鍵を運んでいます。このノードが持っているのは {held} です。同じ版のスナップショットを取り込んでください"
    )]
    SnapshotMismatch { wanted: String, held: String },
    #[error("このノードはスナップショットを持っていません。先にスナップショットを取り込んでください")]
    NoSnapshot,
    #[error("訓練用の認可では実データは開けません。訓練には合成データのスナップショットを使ってください")]
    DrillOnRealData,
    #[error("本番の認可では訓練用の合成データは開けません。本番のスナップショットを取り込んでください")]
    RealOnDrillData,
    #[error(
        "このノードの時計（{now}）が、信頼できる最後の時刻（{mark}）より遅れています。時計を合わせるか、コーディネーターが `kaigo-field clock forward` で進めてください"
    )]
    ClockBehind { now: String, mark: String },
    #[error("この認可のデータ鍵を開けません（このノード用に包まれていません）。中央に確認してください")]
    KeyDoesNotOpen,
}

/// What the node knows when it decides.
pub struct Context<'a> {
    pub central_key: &'a CentralPublicKey,
    pub node_id: &'a str,
    pub snapshot: Option<&'a Manifest>,
    pub now: DateTime<Utc>,
    /// The persisted high-water mark of trusted time.
    pub high_water: DateTime<Utc>,
    /// The highest serial this node has seen for the authorization's id.
    pub seen_serial: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Open the data until `not_after`.
    Activate,
    /// A newer serial whose window has ended: it ends the one in force now (revocation).
    Close,
}

/// "2024-01-01 16:10（日本時間）" for messages.
pub fn jst(t: DateTime<Utc>) -> String {
    let offset = chrono::FixedOffset::east_opt(9 * 3600).expect("+09:00 is valid");
    t.with_timezone(&offset).format("%Y-%m-%d %H:%M（日本時間）").to_string()
}

/// The rules, in the order a person would check them. Pure: no clock, no files.
pub fn decide(signed: &SignedAuthorization, ctx: &Context<'_>) -> Result<Decision, Refusal> {
    let a = &signed.authorization;
    let expected_key = ctx.central_key.key_id();
    if hex::encode(a.central_key_id) != expected_key {
        return Err(Refusal::WrongCentralKey { got: hex::encode(a.central_key_id), expected: expected_key });
    }
    if !signed.signature_valid(ctx.central_key) {
        return Err(Refusal::ForgedSignature);
    }
    if a.grant_for(ctx.node_id).is_none() {
        return Err(Refusal::NodeNotListed(ctx.node_id.to_owned()));
    }
    if ctx.now < ctx.high_water {
        return Err(Refusal::ClockBehind { now: jst(ctx.now), mark: jst(ctx.high_water) });
    }
    if let Some(seen) = ctx.seen_serial
        && a.serial <= seen
    {
        return Err(Refusal::OlderSerial { offered: a.serial, seen });
    }
    let now = ctx.now;
    if now >= a.not_after() {
        // A newer serial of an authorization this node already follows, whose window is over:
        // the central ended it (revocation, or a window shortened to now).
        return if ctx.seen_serial.is_some() { Ok(Decision::Close) } else { Err(Refusal::Expired(jst(a.not_after()))) };
    }
    let snapshot = ctx.snapshot.ok_or(Refusal::NoSnapshot)?;
    let outside: Vec<MunicipalityCode> =
        a.municipalities.iter().copied().filter(|c| !snapshot.municipalities.contains(c)).collect();
    if !outside.is_empty() {
        return Err(Refusal::RegionMismatch(crate::region::names(&outside)));
    }
    if a.snapshot_id_hex() != snapshot.snapshot_id {
        return Err(Refusal::SnapshotMismatch { wanted: a.snapshot_id_hex(), held: snapshot.snapshot_id.clone() });
    }
    match (a.drill, snapshot.synthetic) {
        (true, false) => return Err(Refusal::DrillOnRealData),
        (false, true) => return Err(Refusal::RealOnDrillData),
        _ => {}
    }
    if now < a.not_before() {
        return Err(Refusal::NotYetValid(jst(a.not_before())));
    }
    Ok(Decision::Activate)
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The code as an SVG QR code (error correction M: survives a crease or a smudge on paper).
pub fn qr_svg(code: &str) -> Result<String, qrcode::types::QrError> {
    let qr = qrcode::QrCode::with_error_correction_level(code.as_bytes(), qrcode::EcLevel::M)?;
    Ok(qr.render::<qrcode::render::svg::Color<'_>>().min_dimensions(320, 320).quiet_zone(true).build())
}
