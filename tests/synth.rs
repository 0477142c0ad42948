//! The synthetic population: deterministic, and shaped like the real one.

mod common;

use std::collections::{HashMap, HashSet};

use common::{csv_rows, ok};
use kaigo_field::model::{InsurerNumber, MunicipalityCode, OfficeNumber};

fn synth(dir: &std::path::Path, seed: &str, out: &str, queries: &str, persons: &str) {
    ok(
        &[
            "central",
            "synth",
            "--municipalities",
            "172049,172057,131016",
            "--persons",
            persons,
            "--seed",
            seed,
            "--out",
            out,
            "--queries",
            queries,
            "--query-count",
            "300",
            "--quiet",
        ],
        dir,
    );
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    synth(d, "42", "a.csv", "a.jsonl", "800");
    synth(d, "42", "b.csv", "b.jsonl", "800");
    synth(d, "43", "c.csv", "c.jsonl", "800");
    let read = |f: &str| std::fs::read(d.join(f)).unwrap();
    assert_eq!(read("a.csv"), read("b.csv"));
    assert_eq!(read("a.jsonl"), read("b.jsonl"));
    assert_ne!(read("a.csv"), read("c.csv"));
    assert_ne!(read("a.jsonl"), read("c.jsonl"));
}

#[test]
fn the_population_looks_like_japans_care_recipients() {
    let tmp = tempfile::tempdir().unwrap();
    synth(tmp.path(), "7", "p.csv", "q.jsonl", "6000");
    let rows = csv_rows(&tmp.path().join("p.csv"));
    assert_eq!(rows.len(), 6000);
    let n = rows.len() as f64;
    let share = |pred: &dyn Fn(&HashMap<String, String>) -> bool| rows.iter().filter(|r| pred(r)).count() as f64 / n;

    // Birth years: mostly 1925–1960, some 大正 (1912-07-30 … 1926-12-24), a few 明治.
    let year = |r: &HashMap<String, String>| r["birth_date"][..4].parse::<i32>().unwrap();
    assert!(share(&|r| (1925..=1960).contains(&year(r))) > 0.8);
    let taisho = share(&|r| r["birth_date"].as_str() >= "1912-07-30" && r["birth_date"].as_str() < "1926-12-25");
    assert!((0.01..0.15).contains(&taisho), "大正 share {taisho}");
    assert!(share(&|r| r["birth_date"].as_str() < "1912-07-30") < 0.01);

    // 要介護状態区分 near the national distribution (要介護1 about a fifth, 要介護5 under a tenth).
    let level = |code: &'static str| share(&move |r| r["care_level"] == code);
    assert!((0.17..0.25).contains(&level("21")), "要介護1 {}", level("21"));
    assert!((0.06..0.11).contains(&level("25")), "要介護5 {}", level("25"));
    assert!((0.11..0.17).contains(&level("12")), "要支援1 {}", level("12"));

    // Women are the majority; variant kanji appear at a realistic rate.
    assert!((0.6..0.74).contains(&share(&|r| r["sex"] == "2")));
    let variant_chars = ['髙', '﨑', '邉', '邊', '齋', '齊', '澤', '濵', '濱', '嶋', '𠮷'];
    let variants = share(&|r| r["family_name"].chars().any(|c| variant_chars.contains(&c)));
    assert!((0.005..0.08).contains(&variants), "variant kanji share {variants}");
    assert!(
        rows.iter()
            .any(|r| { r["given_name"].chars().all(|c| ('ァ'..='ヶ').contains(&c) || ('ぁ'..='ゖ').contains(&c)) })
    );

    // Identifiers: check digits, uniqueness, unions.
    let mut insured = HashSet::new();
    for r in &rows {
        MunicipalityCode::parse(&r["municipality_code"]).unwrap();
        assert!(InsurerNumber::parse(&r["insurer_number"]).unwrap().check_ok());
        assert!(InsurerNumber::parse(&r["card_insurer_number"]).unwrap().check_ok());
        if !r["care_office_number"].is_empty() {
            assert!(OfficeNumber::parse(&r["care_office_number"]).unwrap().check_ok());
        }
        assert!(insured.insert((r["insurer_number"].clone(), r["insured_number"].clone())), "duplicate insured number");
        match r["municipality_code"].as_str() {
            // 輪島市 and 珠洲市 are insured by 奥能登広域圏事務組合: the card shows the city's number.
            "172049" | "172057" => assert_ne!(r["insurer_number"], r["card_insurer_number"]),
            "131016" => assert_eq!(r["insurer_number"], "131011"),
            other => panic!("unexpected municipality {other}"),
        }
    }
}

#[test]
fn queries_are_varied_and_carry_their_answers() {
    let tmp = tempfile::tempdir().unwrap();
    synth(tmp.path(), "9", "p.csv", "q.jsonl", "3000");
    let rows = csv_rows(&tmp.path().join("p.csv"));
    let people: HashSet<(String, String)> =
        rows.iter().map(|r| (r["insurer_number"].clone(), r["insured_number"].clone())).collect();
    let text = std::fs::read_to_string(tmp.path().join("q.jsonl")).unwrap();
    let queries: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(queries.len(), 300);
    let mut noise: HashSet<String> = HashSet::new();
    let mut absent = 0;
    for q in &queries {
        for n in q["noise"].as_array().unwrap() {
            noise.insert(n.as_str().unwrap().to_owned());
        }
        match q["expected"].as_object() {
            Some(e) => {
                let key = (
                    e["insurer_number"].as_str().unwrap().to_owned(),
                    e["insured_number"].as_str().unwrap().to_owned(),
                );
                assert!(people.contains(&key), "expected person {key:?} is not in the population");
            }
            None => absent += 1,
        }
    }
    assert!((30..=60).contains(&absent), "absent people: {absent}");
    for kind in [
        "kanji",
        "hiragana",
        "katakana",
        "romaji",
        "wareki_kanji",
        "gyymmdd",
        "typo",
        "missing_sex",
        "card_insurer_number",
    ] {
        assert!(noise.contains(kind), "no query with {kind}: {noise:?}");
    }
}

#[test]
fn emergency_contacts_round_trip_and_an_older_csv_without_the_column_still_reads() {
    use kaigo_field::keys::PersonIdKey;
    use kaigo_field::person_csv::{self, Writer};
    use kaigo_field::synth::{self, Generator};

    let mut generator = Generator::new(synth::Params {
        municipalities: vec![MunicipalityCode::parse("172049").unwrap()],
        persons: 200,
        seed: 4,
        as_of: synth::default_as_of(),
    })
    .unwrap();
    let people: Vec<_> = (0..200).map(|_| generator.person()).collect();
    let with_contacts = people.iter().filter(|p| !p.emergency_contacts.is_empty()).count();
    assert!((100..200).contains(&with_contacts), "most people have someone to call: {with_contacts}");
    assert!(people.iter().flat_map(|p| &p.emergency_contacts).all(|c| !c.name.is_empty() && c.phone.starts_with('0')));

    let mut writer = Writer::new(Vec::new()).unwrap();
    for p in &people {
        writer.write(p).unwrap();
    }
    let bytes = writer.finish().unwrap();
    let ids = PersonIdKey::generate();
    let mut read = Vec::new();
    let report = person_csv::read(&bytes[..], None, &ids, 10, |r| read.push(r)).unwrap();
    assert_eq!(report.valid, 200);
    let contacts =
        |v: &[kaigo_field::model::PersonRecord]| v.iter().map(|p| p.emergency_contacts.clone()).collect::<Vec<_>>();
    assert_eq!(contacts(&read), contacts(&people));

    // The same file without the column, as files made before it existed: every row still reads.
    let mut table = csv::Reader::from_reader(&bytes[..]);
    let headers = table.headers().unwrap().clone();
    let keep: Vec<usize> = (0..headers.len()).filter(|&i| &headers[i] != "emergency_contacts").collect();
    let mut older = csv::Writer::from_writer(Vec::new());
    older.write_record(keep.iter().map(|&i| &headers[i])).unwrap();
    for row in table.records() {
        let row = row.unwrap();
        older.write_record(keep.iter().map(|&i| &row[i])).unwrap();
    }
    let older = older.into_inner().unwrap();
    let mut read = Vec::new();
    let report = person_csv::read(&older[..], None, &ids, 10, |r| read.push(r)).unwrap();
    assert_eq!(report.valid, 200, "{:?}", report.errors.first());
    assert!(read.iter().all(|p| p.emergency_contacts.is_empty()));

    // A contact without a phone number is reported on its line and column.
    let text = String::from_utf8(bytes).unwrap();
    let first = &people.iter().find(|p| !p.emergency_contacts.is_empty()).unwrap().emergency_contacts[0];
    let broken = text.replacen(&format!(";{}", first.phone), ";", 1);
    let report = person_csv::read(broken.as_bytes(), None, &ids, 10, |_| {}).unwrap();
    assert_eq!(report.rows_with_errors, 1);
    assert!(
        report.errors[0].to_string().contains("列 emergency_contacts: 緊急連絡先は「氏名;続柄;電話」"),
        "{}",
        report.errors[0]
    );
}
