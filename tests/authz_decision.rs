//! The authorization decision, as a table: each way an authorization can be wrong is refused
//! with its own message, and a good one activates.

use chrono::{DateTime, Duration, Utc};
use kaigo_field::authz::{self, Authorization, Context, Decision, NodeGrant, Refusal, SignedAuthorization};
use kaigo_field::keys::{CentralSigningKey, DataKey, NodeSecretKey};
use kaigo_field::model::MunicipalityCode;
use kaigo_field::snapshot::Manifest;

const NODE: &str = "shelter-1";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn code(c: &str) -> MunicipalityCode {
    MunicipalityCode::parse(c).unwrap()
}

struct World {
    central: CentralSigningKey,
    node: NodeSecretKey,
    data_key: DataKey,
    snapshot: Manifest,
}

impl World {
    fn new() -> World {
        let data_key = DataKey::generate();
        let central = CentralSigningKey::generate();
        let snapshot = Manifest {
            format_version: 1,
            snapshot_id: "00112233445566778899aabbccddeeff".into(),
            snapshot_version: 4,
            municipalities: vec![code("172049"), code("172057")],
            created_at: t("2024-01-01T09:00:00+09:00"),
            record_count: 10,
            chunk_count: 1,
            search_chunk_count: 1,
            body_bytes: 100,
            content_hash: "sha256:00".into(),
            signing_key_id: central.public().key_id(),
            data_key_id: data_key.key_id(),
            synthetic: false,
            cipher: "XChaCha20-Poly1305".into(),
            compression: "zstd".into(),
            record_encoding: "json-lines".into(),
            search_encoding: "postcard".into(),
        };
        World { central, node: NodeSecretKey::generate(), data_key, snapshot }
    }

    /// A good authorization: 輪島市 and 珠洲市, this node, 2024-01-01 16:10 for 7 days.
    fn authorization(&self) -> Authorization {
        Authorization {
            id: "noto-2024".into(),
            serial: 3,
            issued_at: t("2024-01-01T16:00:00+09:00").timestamp(),
            disaster: "令和6年能登半島地震".into(),
            municipalities: vec![code("172049"), code("172057")],
            facilities: vec!["17*".into()],
            not_before: t("2024-01-01T16:10:00+09:00").timestamp(),
            not_after: t("2024-01-08T16:10:00+09:00").timestamp(),
            snapshot_id: hex::decode(&self.snapshot.snapshot_id).unwrap().try_into().unwrap(),
            central_key_id: self.central.public().key_id_bytes(),
            nodes: vec![NodeGrant {
                node_id: NODE.into(),
                wrapped_key: self.node.public().wrap_data_key(&self.data_key),
            }],
            sections: authz::default_sections(),
            drill: false,
        }
    }

    fn context(&self) -> Context<'_> {
        Context {
            central_key: Box::leak(Box::new(self.central.public())),
            node_id: NODE,
            snapshot: Some(&self.snapshot),
            now: t("2024-01-02T10:00:00+09:00"),
            high_water: t("2024-01-01T16:00:00+09:00"),
            seen_serial: None,
        }
    }

    fn decide(&self, a: &Authorization, tweak: impl FnOnce(&mut Context<'_>)) -> Result<Decision, Refusal> {
        let signed = SignedAuthorization::parse(&a.sign(&self.central))?;
        let mut ctx = self.context();
        tweak(&mut ctx);
        authz::decide(&signed, &ctx)
    }
}

#[test]
fn each_wrong_authorization_is_refused_with_its_own_message_and_a_good_one_activates() {
    let w = World::new();
    let good = w.authorization();
    let other_central = CentralSigningKey::generate();
    let drill_snapshot = Manifest { synthetic: true, ..w.snapshot.clone() };
    let other_region = Manifest { municipalities: vec![code("172049")], ..w.snapshot.clone() };
    let newer_snapshot = Manifest { snapshot_id: "ffeeddccbbaa99887766554433221100".into(), ..w.snapshot.clone() };

    // A forger copies the real central's key id into a longer window but can only sign it with
    // a key of their own.
    let forged = SignedAuthorization::parse(
        &Authorization { not_after: good.not_after + 86_400 * 30, ..good.clone() }.sign(&other_central),
    )
    .unwrap();

    let cases: Vec<(&str, Result<Decision, Refusal>, &str)> = vec![
        ("valid", w.decide(&good, |_| {}), ""),
        ("forged signature", authz::decide(&forged, &w.context()), "署名が正しくありません"),
        (
            "wrong central key",
            w.decide(&Authorization { central_key_id: other_central.public().key_id_bytes(), ..good.clone() }, |_| {}),
            "別の中央の鍵",
        ),
        ("node not listed", w.decide(&good, |c| c.node_id = "shelter-2"), "含まれていません"),
        ("not yet valid", w.decide(&good, |c| c.now = t("2024-01-01T16:05:00+09:00")), "まだ有効ではありません"),
        ("expired", w.decide(&good, |c| c.now = t("2024-01-08T16:10:00+09:00")), "期限切れ"),
        ("older serial replayed", w.decide(&good, |c| c.seen_serial = Some(3)), "連番 3"),
        ("region mismatch", w.decide(&good, |c| c.snapshot = Some(Box::leak(Box::new(other_region)))), "珠洲市"),
        (
            "another snapshot's key",
            w.decide(&good, |c| c.snapshot = Some(Box::leak(Box::new(newer_snapshot)))),
            "別のスナップショット",
        ),
        ("no snapshot", w.decide(&good, |c| c.snapshot = None), "スナップショットを持っていません"),
        (
            "drill on real data",
            w.decide(&Authorization { drill: true, ..good.clone() }, |_| {}),
            "訓練用の認可では実データ",
        ),
        (
            "real on drill data",
            w.decide(&good, |c| c.snapshot = Some(Box::leak(Box::new(drill_snapshot)))),
            "本番の認可では訓練用",
        ),
        (
            "clock behind the high-water mark",
            w.decide(&good, |c| c.high_water = t("2024-01-03T00:00:00+09:00")),
            "時計",
        ),
        ("malformed: not a code", SignedAuthorization::parse("hello").map(|_| Decision::Activate), "KFA1-"),
        (
            "malformed: one character mistyped",
            {
                let mut text = good.sign(&w.central);
                let i = text.len() / 2;
                let c = text.as_bytes()[i];
                let replacement = if c == b'A' { "B" } else { "A" };
                text.replace_range(i..i + 1, replacement);
                SignedAuthorization::parse(&text).map(|_| Decision::Activate)
            },
            "チェックサム",
        ),
        (
            "malformed: cut short",
            {
                let text = good.sign(&w.central);
                SignedAuthorization::parse(&text[..40]).map(|_| Decision::Activate)
            },
            "途中で切れて",
        ),
    ];

    let mut messages = std::collections::HashSet::new();
    for (name, result, needle) in &cases {
        match result {
            Ok(decision) => {
                assert_eq!(*name, "valid", "{name} was not refused");
                assert_eq!(*decision, Decision::Activate);
            }
            Err(refusal) => {
                let message = refusal.to_string();
                assert!(message.contains(needle), "{name}: {message:?} lacks {needle:?}");
                assert!(messages.insert(message.clone()), "{name}: message shared with another case: {message}");
            }
        }
    }
    assert_eq!(messages.len(), cases.len() - 1);
}

#[test]
fn a_newer_serial_whose_window_is_over_closes_what_it_replaces() {
    let w = World::new();
    let now = t("2024-01-02T10:00:00+09:00");
    let revocation = Authorization { serial: 4, not_after: now.timestamp(), ..w.authorization() };
    assert_eq!(w.decide(&revocation, |c| c.seen_serial = Some(3)), Ok(Decision::Close));
    // Without a serial seen before, an ended window is simply expired.
    assert!(matches!(w.decide(&revocation, |_| {}), Err(Refusal::Expired(_))));
    // An extension: a higher serial with a later not-after activates.
    let extension = Authorization { serial: 4, not_after: (now + Duration::days(10)).timestamp(), ..w.authorization() };
    assert_eq!(w.decide(&extension, |c| c.seen_serial = Some(3)), Ok(Decision::Activate));
}

#[test]
fn text_codes_survive_what_people_do_to_them() {
    let w = World::new();
    let a = w.authorization();
    let text = a.sign(&w.central);
    assert!(text.starts_with("KFA1-"));
    assert!(text.len() < 700, "short enough to send as a message: {} characters", text.len());
    let mangled: String = text
        .to_lowercase()
        .replace('-', " ")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| if i % 40 == 39 { vec![c, '\n'] } else { vec![c] })
        .collect();
    let parsed = SignedAuthorization::parse(&format!("  {mangled}\n")).unwrap();
    assert_eq!(parsed.authorization, a);
    // Digits misread for letters (O as 0, I as 1, B as 8) are taken back.
    let misread = text.replacen('O', "0", 1).replacen('I', "1", 1).replacen('B', "8", 1);
    assert_eq!(SignedAuthorization::parse(&misread).unwrap().authorization, a);
    // The QR code of the code renders.
    assert!(authz::qr_svg(&text).unwrap().contains("<svg"));
}

#[test]
fn facility_rules_take_numbers_and_prefixes() {
    let w = World::new();
    let a = Authorization { facilities: vec!["17*".into(), "3970100011".into()], ..w.authorization() };
    assert!(a.allows_facility("1772090005"));
    assert!(a.allows_facility("3970100011"));
    assert!(!a.allows_facility("3970100012"));
    assert!(!a.allows_facility("1372090005"));
}
