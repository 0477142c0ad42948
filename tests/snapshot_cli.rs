//! The central and node commands, as real processes on real files: every refusal with a message
//! that names the problem, atomic import, Shift_JIS input, and no personal data in the clear.

mod common;

use std::fs;
use std::path::Path;

use common::{Fixture, csv_rows, fails, ok};
use kaigo_field::central::{self, CentralDir};
use kaigo_field::model::PersonRecord;
use kaigo_field::node::{Node, NodeDir};
use kaigo_field::snapshot::HEADER_BYTES;

fn held_version(dir: &Path) -> Option<u64> {
    Node::open(&NodeDir::new(dir)).unwrap().current_manifest().unwrap().map(|(h, _)| h.snapshot_version)
}

fn write_modified(f: &Fixture, name: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(f.path("region.kfsnap")).unwrap();
    edit(&mut bytes);
    fs::write(f.path(name), bytes).unwrap();
}

#[test]
fn every_bad_snapshot_is_refused_with_a_message_that_names_the_problem() {
    let f = Fixture::new(120);
    f.node("n", "17");
    let manifest_len = {
        let b = fs::read(f.path("region.kfsnap")).unwrap();
        u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize
    };
    write_modified(&f, "bad-signature.kfsnap", |b| b[HEADER_BYTES + manifest_len / 2] ^= 0x20);
    write_modified(&f, "altered.kfsnap", |b| {
        let last = b.len() - 1;
        b[last] ^= 0x01;
    });
    write_modified(&f, "truncated.kfsnap", |b| b.truncate(b.len() * 2 / 3));
    write_modified(&f, "v9.kfsnap", |b| b[6..8].copy_from_slice(&9u16.to_le_bytes()));
    fs::write(f.path("not-a-snapshot.kfsnap"), "insurer_number,card_insurer_number\n").unwrap();
    // Another central's snapshot of the same people.
    ok(&["central", "init", "--dir", "other"], f.dir());
    ok(
        &[
            "central",
            "snapshot",
            "--dir",
            "other",
            "--input",
            "persons.csv",
            "--out",
            "other.kfsnap",
            "--synthetic",
            "--quiet",
        ],
        f.dir(),
    );

    let cases = [
        ("bad-signature.kfsnap", "署名が正しくありません"),
        ("altered.kfsnap", "署名された内容と一致しません"),
        ("truncated.kfsnap", "途中で切れています"),
        ("v9.kfsnap", "形式 v9"),
        ("not-a-snapshot.kfsnap", "スナップショットではありません"),
        ("other.kfsnap", "知らない鍵"),
    ];
    for (file, message) in cases {
        for command in ["verify", "import"] {
            let err = fails(&["snapshot", command, "--dir", "n", file, "--quiet"], f.dir());
            assert!(err.contains(message), "{command} {file}: expected {message:?} in {err}");
            assert!(
                err.contains("取り直して")
                    || err.contains("指定して")
                    || err.contains("更新")
                    || err.contains("設定し直"),
                "{command} {file}: no fix in {err}"
            );
        }
    }
    assert_eq!(held_version(&f.path("n")), None, "nothing was imported");

    // Wrong region: a 高知県 node is offered 石川県's snapshot.
    f.node("kochi", "39");
    let err = fails(&["snapshot", "import", "--dir", "kochi", "region.kfsnap", "--quiet"], f.dir());
    assert!(err.contains("担当地域") && err.contains("輪島市") && err.contains("高知県"), "{err}");

    // Older than held: import v2, then offer v1 again.
    f.snapshot("v2.kfsnap");
    ok(&["snapshot", "import", "--dir", "n", "v2.kfsnap", "--quiet"], f.dir());
    let err = fails(&["snapshot", "import", "--dir", "n", "region.kfsnap", "--quiet"], f.dir());
    assert!(err.contains("版 1") && err.contains("版 2") && err.contains("新しくありません"), "{err}");
    assert_eq!(held_version(&f.path("n")), Some(2));
}

#[test]
fn a_failed_import_keeps_the_previous_snapshot_and_leftovers_of_a_crash_are_cleaned() {
    let f = Fixture::new(60);
    f.node("n", "172049,172057");
    ok(&["snapshot", "import", "--dir", "n", "region.kfsnap", "--quiet"], f.dir());
    assert_eq!(held_version(&f.path("n")), Some(1));

    // v2 is damaged at its very end: found only after the whole body was copied.
    f.snapshot("v2.kfsnap");
    let mut bytes = fs::read(f.path("v2.kfsnap")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(f.path("v2-bad.kfsnap"), &bytes).unwrap();
    fails(&["snapshot", "import", "--dir", "n", "v2-bad.kfsnap", "--quiet"], f.dir());
    assert_eq!(held_version(&f.path("n")), Some(1));
    let files = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(files(&f.path("n/snapshots")).len(), 1, "no temporary file is left behind");

    // What a crash leaves at each step of an import: a half-copied temporary file, and a fully
    // copied file renamed into place whose switch never committed. Neither is used.
    fs::write(f.path("n/snapshots/.import-deadbeef.tmp"), b"half a copy").unwrap();
    fs::copy(f.path("v2.kfsnap"), f.path("n/snapshots/0123456789abcdef0123456789abcdef.kfsnap")).unwrap();
    assert_eq!(held_version(&f.path("n")), Some(1));
    ok(&["snapshot", "import", "--dir", "n", "v2.kfsnap", "--quiet"], f.dir());
    assert_eq!(held_version(&f.path("n")), Some(2));
    assert_eq!(
        files(&f.path("n/snapshots")).len(),
        1,
        "leftovers and the old version are gone: {:?}",
        files(&f.path("n/snapshots"))
    );
}

#[test]
fn no_name_kana_or_insured_number_is_readable_anywhere_in_the_snapshot_or_the_node() {
    let f = Fixture::new(400);
    f.node("n", "17");
    ok(&["snapshot", "import", "--dir", "n", "region.kfsnap", "--quiet"], f.dir());
    let mut hay = fs::read(f.path("region.kfsnap")).unwrap();
    let mut stack = vec![f.path("n")];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                hay.extend(fs::read(&path).unwrap());
                files += 1;
            }
        }
    }
    assert!(files >= 3, "node.db, central.pub and the snapshot copy were searched");
    let contains = |needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    let rows = csv_rows(&f.path("persons.csv"));
    for r in &rows {
        let full_name = format!("{}{}", r["family_name"], r["given_name"]);
        let full_kana = format!("{}{}", r["family_name_kana"], r["given_name_kana"]);
        for needle in [&full_name, &full_kana, &r["insured_number"], &r["address"], &r["family_name_kana"]] {
            assert!(!contains(needle), "{needle} is readable in the node's files");
        }
        if r["family_name"].chars().count() >= 2 {
            assert!(!contains(&r["family_name"]), "{} is readable", r["family_name"]);
        }
    }
}

fn records(central_dir: &Path, file: &Path) -> Vec<PersonRecord> {
    let mut out = Vec::new();
    central::open_snapshot(&CentralDir::new(central_dir), file, |r| out.push(r)).unwrap();
    out
}

#[test]
fn a_shift_jis_file_imports_the_same_as_its_utf8_twin() {
    let f = Fixture::new(300);
    let text = fs::read_to_string(f.path("persons.csv")).unwrap();
    // Municipal Shift_JIS exports cannot hold characters outside MS932 (𠮷 and the like): such
    // rows are left out of both twins, so the comparison is exact.
    let mut utf8 = String::new();
    let mut dropped = 0;
    for line in text.lines() {
        let (_, _, unmappable) = encoding_rs::SHIFT_JIS.encode(line);
        if unmappable {
            dropped += 1;
        } else {
            utf8.push_str(line);
            utf8.push_str("\r\n");
        }
    }
    assert!(dropped < 20, "{dropped} rows could not be written in Shift_JIS");
    let (sjis, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&utf8);
    assert!(!unmappable);
    assert!(sjis.iter().any(|&b| b >= 0x80) && std::str::from_utf8(&sjis).is_err(), "really Shift_JIS bytes");
    fs::write(f.path("twin-utf8.csv"), &utf8).unwrap();
    fs::write(f.path("twin-sjis.csv"), &sjis).unwrap();

    let build = |input: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["central", "snapshot", "--dir", "central", "--input", input, "--out", out, "--synthetic"];
        args.extend_from_slice(extra);
        ok(&args, f.dir())
    };
    build("twin-utf8.csv", "utf8.kfsnap", &[]);
    let detected = build("twin-sjis.csv", "sjis.kfsnap", &[]);
    assert!(detected.contains("Shift_JIS"), "encoding detected and reported: {detected}");
    build("twin-sjis.csv", "sjis-named.kfsnap", &["--encoding", "shift_jis"]);

    let from_utf8 = records(&f.path("central"), &f.path("utf8.kfsnap"));
    assert_eq!(from_utf8.len(), 300 - dropped);
    assert_eq!(records(&f.path("central"), &f.path("sjis.kfsnap")), from_utf8);
    assert_eq!(records(&f.path("central"), &f.path("sjis-named.kfsnap")), from_utf8);

    // And a node takes the Shift_JIS-built snapshot like any other.
    f.node("n", "17");
    ok(&["snapshot", "import", "--dir", "n", "sjis.kfsnap", "--quiet"], f.dir());
}

#[test]
fn bad_rows_are_reported_by_line_and_column_and_refuse_the_file_unless_skipped() {
    let f = Fixture::new(5);
    let text = fs::read_to_string(f.path("persons.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let header: Vec<String> = lines[0].split(',').map(str::to_owned).collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    // Rows are simple enough here to edit by field; quoted cells come later in the row.
    let edit = |line: &str, column: usize, value: &str| {
        let mut rec: Vec<String> = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        rec[column] = value.to_owned();
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&rec).unwrap();
        String::from_utf8(w.into_inner().unwrap()).unwrap().trim_end().to_owned()
    };
    lines[2] = edit(&lines[2], col("birth_date"), "1940-02-30");
    lines[4] = edit(&lines[4], col("municipality_code"), "172048");
    lines[5] = edit(&lines[5], col("family_name_kana"), "yamada");
    lines[3] = lines[3].split(',').take(5).collect::<Vec<_>>().join(",");
    fs::write(f.path("bad.csv"), lines.join("\n") + "\n").unwrap();

    let err = fails(
        &["central", "snapshot", "--dir", "central", "--input", "bad.csv", "--out", "bad.kfsnap", "--quiet"],
        f.dir(),
    );
    assert!(err.contains("3行目 列 birth_date: 存在しない日付です"), "{err}");
    assert!(err.contains("5行目 列 municipality_code: 市区町村コードの検査数字が合いません"), "{err}");
    assert!(err.contains("6行目 列 family_name_kana"), "{err}");
    assert!(err.contains("4行目 列 (行全体): 列の数が 5 です"), "{err}");
    assert!(err.contains("誤りのある行が 4 行"), "{err}");
    assert!(!f.path("bad.kfsnap").exists(), "a refused file writes no snapshot");

    let out = ok(
        &[
            "central",
            "snapshot",
            "--dir",
            "central",
            "--input",
            "bad.csv",
            "--out",
            "bad.kfsnap",
            "--skip-invalid",
            "--quiet",
        ],
        f.dir(),
    );
    assert!(out.contains("有効 1、誤りのある行 4"), "{out}");
    assert!(out.contains("人数: 1"), "{out}");
}

/// Finding 9.4: a UTF-8 file with one bad byte was read as Shift_JIS, so every row failed with
/// garbled messages. It is read as UTF-8 and the one bad byte is reported by line and column,
/// with how to fix it.
#[test]
fn a_utf8_csv_with_one_bad_byte_is_read_as_utf8_and_the_byte_is_reported_by_line() {
    let f = Fixture::new(60);
    let text = fs::read_to_string(f.path("persons.csv")).unwrap();
    let rows = csv_rows(&f.path("persons.csv"));
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(lines.len(), rows.len() + 1, "one physical line per row");
    // Line 21 is the 20th person: one stray byte after the first character of the family name.
    let target = 20;
    let family = &rows[target - 1]["family_name"];
    let line = lines[target];
    let at = line.find(&format!(",{family},")).expect("the family name in its row") + 1;
    let first = family.chars().next().unwrap().len_utf8();
    let mut bytes = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i == target {
            bytes.extend_from_slice(&l.as_bytes()[..at + first]);
            bytes.push(0xFF);
            bytes.extend_from_slice(&l.as_bytes()[at + first..]);
        } else {
            bytes.extend_from_slice(l.as_bytes());
        }
    }
    fs::write(f.path("one-bad-byte.csv"), &bytes).unwrap();

    let err = fails(
        &["central", "snapshot", "--dir", "central", "--input", "one-bad-byte.csv", "--out", "x.kfsnap", "--quiet"],
        f.dir(),
    );
    assert!(err.contains("文字コード: UTF-8"), "detected as UTF-8: {err}");
    assert!(err.contains("誤りのある行 1"), "only the row with the bad byte is refused: {err}");
    let problem = err.lines().find(|l| l.starts_with("誤り:")).expect("the problem is printed");
    assert!(problem.contains("21行目") && problem.contains("family_name"), "names line and column: {problem}");
    assert!(problem.contains("UTF-8") && problem.contains("保存"), "says how to fix it: {problem}");
    assert!(!err.contains('\u{FFFD}'), "no replacement characters: {err}");
    // The rest of the output is readable Japanese, not Shift_JIS mojibake of UTF-8 (縺, 繧 …).
    assert!(!err.contains('縺') && !err.contains('繧'), "mojibake: {err}");
}
