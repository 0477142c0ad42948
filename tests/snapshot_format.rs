//! The snapshot file, in memory: every byte is covered, every refusal has its own reason, and
//! only the data key opens the records.

use chrono::DateTime;
use kaigo_field::keys::{CentralSigningKey, DataKey};
use kaigo_field::model::{MunicipalityCode, PersonRecord};
use kaigo_field::snapshot::{self, BuildParams, HEADER_BYTES, SIGNATURE_BYTES, SnapshotError};
use kaigo_field::synth::{self, Generator};

struct Built {
    bytes: Vec<u8>,
    records: Vec<PersonRecord>,
    key: CentralSigningKey,
    data_key: DataKey,
    manifest_len: usize,
}

fn build(persons: u64) -> Built {
    let mut generator = Generator::new(synth::Params {
        municipalities: vec![MunicipalityCode::parse("172049").unwrap(), MunicipalityCode::parse("172057").unwrap()],
        persons,
        seed: 5,
        as_of: synth::default_as_of(),
    })
    .unwrap();
    let records: Vec<PersonRecord> = (0..persons).map(|_| generator.person()).collect();
    let key = CentralSigningKey::generate();
    let data_key = DataKey::generate();
    let mut builder = snapshot::Builder::new(&data_key);
    for r in &records {
        builder.push(r).unwrap();
    }
    let mut bytes = Vec::new();
    let params = BuildParams {
        snapshot_version: 3,
        created_at: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        synthetic: true,
        signing_key: &key,
        data_key: &data_key,
    };
    builder.finish(params, &mut bytes).unwrap();
    let manifest_len = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
    Built { bytes, records, key, data_key, manifest_len }
}

fn verify(b: &Built, bytes: &[u8]) -> Result<snapshot::Manifest, SnapshotError> {
    snapshot::verify(bytes, &b.key.public(), &mut std::io::sink(), |_| {})
}

#[test]
fn records_round_trip_and_the_manifest_says_what_is_inside() {
    let b = build(50);
    let m = verify(&b, &b.bytes).unwrap();
    assert_eq!(m.record_count, 50);
    assert_eq!(m.snapshot_version, 3);
    assert!(m.synthetic);
    assert_eq!(m.municipalities.len(), 2);
    let mut opened = Vec::new();
    snapshot::open(&b.bytes[..], &b.key.public(), &b.data_key, |r| opened.push(r)).unwrap();
    assert_eq!(opened, b.records);
}

#[test]
fn flipping_any_single_byte_makes_verify_fail_with_the_reason_for_that_part() {
    let b = build(12);
    let head_end = HEADER_BYTES + b.manifest_len + SIGNATURE_BYTES;
    for i in 0..b.bytes.len() {
        let mut bad = b.bytes.clone();
        bad[i] ^= 0xFF;
        let err = verify(&b, &bad).expect_err(&format!("byte {i} flipped still verifies"));
        let expected = match i {
            0..6 => matches!(err, SnapshotError::NotASnapshot),
            6..8 => matches!(err, SnapshotError::UnknownFormatVersion(_)),
            8..16 => matches!(err, SnapshotError::UnknownKey { .. }),
            16..20 => matches!(err, SnapshotError::BadSignature | SnapshotError::Truncated { .. }),
            _ if i < head_end => matches!(err, SnapshotError::BadSignature),
            _ => matches!(err, SnapshotError::Altered { .. } | SnapshotError::Truncated { .. }),
        };
        assert!(expected, "byte {i}: unexpected refusal {err:?}");
    }
}

#[test]
fn every_truncation_and_any_appended_byte_is_refused() {
    let b = build(8);
    for len in 0..b.bytes.len() {
        let err = verify(&b, &b.bytes[..len]).expect_err(&format!("truncated to {len} still verifies"));
        if len >= 6 {
            assert!(matches!(err, SnapshotError::Truncated { .. }), "length {len}: {err:?}");
        }
    }
    let mut longer = b.bytes.clone();
    longer.push(0);
    assert!(matches!(verify(&b, &longer), Err(SnapshotError::Altered { .. })));
}

#[test]
fn another_centrals_key_is_unknown_and_a_resigned_manifest_is_a_bad_signature() {
    let b = build(5);
    let stranger = CentralSigningKey::generate();
    let err = snapshot::verify(&b.bytes[..], &stranger.public(), &mut std::io::sink(), |_| {}).unwrap_err();
    assert!(matches!(err, SnapshotError::UnknownKey { .. }));
    assert!(err.to_string().contains("知らない鍵"), "{err}");

    // A forger edits the manifest (more records) and keeps the old signature.
    let mut forged = b.bytes.clone();
    let text = String::from_utf8(forged[HEADER_BYTES..HEADER_BYTES + b.manifest_len].to_vec()).unwrap();
    let edited = text.replace("\"record_count\":5", "\"record_count\":6");
    assert_ne!(text, edited);
    forged[HEADER_BYTES..HEADER_BYTES + b.manifest_len].copy_from_slice(edited.as_bytes());
    let err = verify(&b, &forged).unwrap_err();
    assert!(matches!(err, SnapshotError::BadSignature));
    assert!(err.to_string().contains("署名が正しくありません"), "{err}");
}

#[test]
fn an_unknown_format_version_names_itself() {
    let b = build(3);
    let mut v9 = b.bytes.clone();
    v9[6..8].copy_from_slice(&9u16.to_le_bytes());
    let err = verify(&b, &v9).unwrap_err();
    assert!(err.to_string().contains("v9"), "{err}");
}

#[test]
fn the_search_section_carries_every_person_and_opens_without_the_records() {
    let b = build(30);
    let (section, _) = snapshot::open_search(&b.bytes[..], &b.key.public(), &b.data_key).unwrap();
    assert_eq!(section.rows.len(), 30);
    assert_eq!(section, kaigo_field::search::section::section_of(&b.records));
    let wrong = DataKey::generate();
    assert!(snapshot::open_search(&b.bytes[..], &b.key.public(), &wrong).is_err());
}

#[test]
fn only_the_right_data_key_opens_the_records() {
    let b = build(5);
    let wrong = DataKey::generate();
    let mut seen = 0;
    let err = snapshot::open(&b.bytes[..], &b.key.public(), &wrong, |_| seen += 1).unwrap_err();
    assert!(matches!(err, SnapshotError::Decrypt));
    assert_eq!(seen, 0);
}

#[test]
fn no_personal_string_is_in_the_file() {
    let b = build(200);
    let hay = &b.bytes;
    let contains = |needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for r in &b.records {
        for s in [
            format!("{}{}", r.family_name, r.given_name),
            format!("{}{}", r.family_name_kana, r.given_name_kana),
            r.insured_number.as_str().to_owned(),
            r.address.clone(),
        ] {
            assert!(!contains(s.as_bytes()), "{s} is readable in the snapshot");
        }
    }
}

#[test]
fn one_record_is_read_by_its_position_across_chunks_and_a_moved_chunk_fails() {
    let b = build(4500); // three record chunks of 2048
    let (_, map) = snapshot::open_search(&b.bytes[..], &b.key.public(), &b.data_key).unwrap();
    let mut file = std::io::Cursor::new(b.bytes.clone());
    for i in [0u64, 1, 2047, 2048, 4095, 4096, 4499] {
        let r = snapshot::read_record(&mut file, &map, &b.data_key, i).unwrap();
        assert_eq!(r, b.records[i as usize], "record {i}");
    }
    assert!(snapshot::read_record(&mut file, &map, &b.data_key, 4500).is_err());
    assert!(matches!(snapshot::read_record(&mut file, &map, &DataKey::generate(), 5), Err(SnapshotError::Decrypt)));
    // A byte flipped inside the first chunk after activation: authentication refuses it.
    let mut bytes = b.bytes.clone();
    let first_chunk = HEADER_BYTES + b.manifest_len + SIGNATURE_BYTES + 4 + 24 + 10;
    bytes[first_chunk] ^= 1;
    let mut altered = std::io::Cursor::new(bytes);
    assert!(matches!(snapshot::read_record(&mut altered, &map, &b.data_key, 3), Err(SnapshotError::Decrypt)));
    assert_eq!(snapshot::read_record(&mut altered, &map, &b.data_key, 2048).unwrap(), b.records[2048]);
}
