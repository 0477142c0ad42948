//! Authorizations through the real commands: issue, import (file and pasted text), extend,
//! revoke, close, move the clock; a stolen dormant node; and no key material in any output.

mod common;

use std::path::Path;

use chrono::{Duration, SecondsFormat, Utc};
use common::{Fixture, all_bytes, contains, csv_rows, fails, ok, run_env};

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A drill authorization for node `n` (id "noto"), returning the code printed on the last line.
fn authorize(f: &Fixture, out: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "central",
        "authorize",
        "--dir",
        "central",
        "--disaster",
        "令和6年能登半島地震",
        "--municipalities",
        "172049,172057",
        "--nodes",
        "n",
        "--drill",
        "--id",
        "noto",
        "--out",
        out,
        "--text",
    ];
    args.extend_from_slice(extra);
    let stdout = ok(&args, f.dir());
    let code = stdout.lines().rfind(|l| l.starts_with("KFA1-")).expect("code printed").to_owned();
    assert_eq!(std::fs::read_to_string(f.path(out)).unwrap().trim(), code);
    code
}

#[test]
fn an_authorization_is_issued_imported_extended_revoked_and_closed_through_the_commands() {
    let f = Fixture::new(40);
    f.node("n", "17");
    f.node("n2", "17");
    ok(&["snapshot", "import", "--dir", "n", "region.kfsnap", "--quiet"], f.dir());
    let status = || ok(&["authz", "status", "--dir", "n"], f.dir());
    assert!(status().contains("災害認可がありません"));

    // A real (not drill) authorization cannot be cut for synthetic data, at the central already.
    let err = fails(
        &"central authorize --dir central --disaster x --municipalities 172049 --nodes n --out real.kfauth"
            .split(' ')
            .collect::<Vec<_>>(),
        f.dir(),
    );
    assert!(err.contains("合成データ"), "{err}");

    let code = authorize(&f, "a1.kfauth", &["--qr", "a1.svg"]);
    assert!(std::fs::read_to_string(f.path("a1.svg")).unwrap().contains("<svg"));
    let out = ok(&["authz", "import", "--dir", "n", "a1.kfauth"], f.dir());
    assert!(out.contains("取り込みました（noto 連番 1）"), "{out}");
    assert!(status().contains("有効: 令和6年能登半島地震（noto 連番 1）"));

    // Replayed: refused by serial.
    let err = fails(&["authz", "import", "--dir", "n", "a1.kfauth"], f.dir());
    assert!(err.contains("連番 1") && err.contains("古い"), "{err}");

    // For another node only: refused.
    let other = ok(
        &"central authorize --dir central --disaster x --municipalities 172049 --nodes n2 --drill --out other.kfauth"
            .split(' ')
            .collect::<Vec<_>>(),
        f.dir(),
    );
    assert!(other.contains("n2"));
    let err = fails(&["authz", "import", "--dir", "n", "other.kfauth"], f.dir());
    assert!(err.contains("このノード（n）が含まれていません"), "{err}");

    // Extended to 14 days, pasted by hand in lower case with spaces and line breaks.
    let extension = authorize(&f, "a2.kfauth", &["--days", "14"]);
    let pasted: String = extension
        .to_lowercase()
        .replace('-', " ")
        .chars()
        .collect::<Vec<_>>()
        .chunks(30)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("\n");
    let out = ok(&["authz", "import", "--dir", "n", "--text", &pasted], f.dir());
    assert!(out.contains("連番 2"), "{out}");
    assert!(status().contains("連番 2"));

    // Revoked: a newer serial whose window is already over ends it.
    let now = Utc::now();
    authorize(
        &f,
        "a3.kfauth",
        &["--not-before", &rfc3339(now - Duration::hours(1)), "--not-after", &rfc3339(now - Duration::minutes(1))],
    );
    let out = ok(&["authz", "import", "--dir", "n", "a3.kfauth"], f.dir());
    assert!(out.contains("連番 3 で終了しました"), "{out}");
    let s = status();
    assert!(s.contains("無効") && s.contains("中央が終了"), "{s}");

    // Active again with serial 4, then closed by the coordinator.
    authorize(&f, "a4.kfauth", &[]);
    ok(&["authz", "import", "--dir", "n", "a4.kfauth"], f.dir());
    assert!(ok(&["authz", "close", "--dir", "n"], f.dir()).contains("認可 noto を終了しました"));
    assert!(status().contains("コーディネーターが終了"));
    assert!(ok(&["authz", "close", "--dir", "n"], f.dir()).contains("有効な認可はありません"));

    // The clock moves forward only, and the move is recorded.
    let err = fails(&["clock", "forward", "--dir", "n", "--to", &rfc3339(now - Duration::days(1))], f.dir());
    assert!(err.contains("進めることしかできません"), "{err}");
    // Without a terminal to ask on, a move needs --yes (the probe found the command asked nothing).
    let soon = rfc3339(now + Duration::hours(2));
    let err = fails(&["clock", "forward", "--dir", "n", "--to", &soon], f.dir());
    assert!(err.contains("--yes") && err.contains("進めます"), "{err}");
    let out = ok(&["clock", "forward", "--dir", "n", "--to", &soon, "--yes"], f.dir());
    assert!(out.contains("進めました"), "{out}");
    let node = kaigo_field::node::Node::open(&kaigo_field::node::NodeDir::new(f.path("n"))).unwrap();
    assert_eq!(node.store.clock_moves().unwrap().len(), 1);
    assert!(code.starts_with("KFA1-"));
}

#[test]
fn a_stolen_dormant_node_holds_no_personal_data_and_no_command_opens_it() {
    let f = Fixture::new(150);
    let pass = [("KAIGO_FIELD_PASSPHRASE", "correct horse battery")];
    ok(
        &["central", "enroll-node", "--dir", "central", "--node-id", "n", "--region", "17", "--out", "n.bundle"],
        f.dir(),
    );
    let out = run_env(&["node", "init", "--dir", "n", "--bundle", "n.bundle", "--seal"], f.dir(), &pass);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_file(f.path("n.bundle")).unwrap();
    // With a sealed key, every command that writes to the node (and so signs its audit log)
    // needs the passphrase.
    let with_pass = |args: &[&str]| {
        let out = run_env(args, f.dir(), &pass);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    with_pass(&["snapshot", "import", "--dir", "n", "region.kfsnap", "--quiet"]);
    authorize(&f, "a1.kfauth", &[]);
    with_pass(&["authz", "import", "--dir", "n", "a1.kfauth"]);
    with_pass(&["authz", "close", "--dir", "n"]);

    // The thief copies the whole dormant node.
    let status = std::process::Command::new("cp").args(["-a", "n", "stolen"]).current_dir(f.dir()).status().unwrap();
    assert!(status.success());
    let hay = all_bytes(&f.path("stolen"));
    for r in csv_rows(&f.path("persons.csv")) {
        for needle in [
            format!("{}{}", r["family_name"], r["given_name"]),
            format!("{}{}", r["family_name_kana"], r["given_name_kana"]),
            r["insured_number"].clone(),
            r["address"].clone(),
        ] {
            assert!(!contains(&hay, &needle), "{needle} is readable in the stolen node");
        }
    }
    assert!(!contains(&hay, "KFA1"), "a closed authorization's code (and wrapped key) is gone from the node");

    // No command opens the data: the old code is refused, the status says so, and the sealed
    // node key does not open without the passphrase.
    let s = ok(&["authz", "status", "--dir", "stolen"], f.dir());
    assert!(s.contains("無効"), "{s}");
    let out = run_env(&["authz", "import", "--dir", "stolen", "a1.kfauth"], f.dir(), &pass);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("古い"));
    let authz2 = authorize(&f, "a2.kfauth", &[]);
    let out = run_env(&["authz", "import", "--dir", "stolen", "--text", &authz2], f.dir(), &[]);
    assert!(!out.status.success(), "a sealed key must not open without its passphrase");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("パスフレーズ"), "{stderr}");
    let out = run_env(
        &["authz", "import", "--dir", "stolen", "--text", &authz2],
        f.dir(),
        &[("KAIGO_FIELD_PASSPHRASE", "guess")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("パスフレーズが違います"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_material_never_appears_in_logs_or_output() {
    let f = Fixture::new(30);
    let trace = [("RUST_LOG", "trace")];
    let output = std::cell::RefCell::new(String::new());
    let run = |args: &[&str]| {
        let out = run_env(args, f.dir(), &trace);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        output.borrow_mut().push_str(&String::from_utf8_lossy(&out.stdout));
        output.borrow_mut().push_str(&String::from_utf8_lossy(&out.stderr));
    };
    run(&["central", "enroll-node", "--dir", "central", "--node-id", "n", "--region", "17", "--out", "n.bundle"]);
    let bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.path("n.bundle")).unwrap()).unwrap();
    run(&["node", "init", "--dir", "n", "--bundle", "n.bundle"]);
    run(&["snapshot", "import", "--dir", "n", "region.kfsnap"]);
    run(&Fixture::drill_args("n", "172049", "a.kfauth"));
    run(&["authz", "import", "--dir", "n", "a.kfauth"]);
    run(&["authz", "status", "--dir", "n"]);

    let mut server = common::Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &trace);
    let url = server.url();
    let http = common::https_client(&f.path("n/tls/ca.pem"));
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{url}search")).send().await.unwrap().status(), 200);
    let (status, served) = server.terminate();
    assert!(status.success());
    output.borrow_mut().push_str(&served);
    run(&["authz", "close", "--dir", "n"]);
    let output = output.into_inner();
    assert!(output.len() > 1000, "trace logging was captured");

    // Every secret, as it is stored and in the encodings a careless log line might use.
    let key_body = |path: &Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_owned)
            .collect()
    };
    let mut secrets: Vec<String> = Vec::new();
    for file in ["central/central.key", "central/person-id.key", "n/node.key"] {
        secrets.extend(key_body(&f.path(file)));
    }
    for entry in std::fs::read_dir(f.path("central/snapshots")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            secrets.extend(key_body(&path));
        }
    }
    secrets.push(bundle["node_secret_key"].as_str().unwrap().lines().nth(1).unwrap().to_owned());
    let mut raw: Vec<Vec<u8>> = secrets.iter().filter_map(|b64| base64_decode(b64)).collect();
    // TLS keys are PKCS#8 PEM, whose lines also carry the public key (which is in the
    // certificate, and may be logged); look for the 32-byte private scalar itself.
    for pem in ["central/ca.key", "n/tls/key.pem"] {
        let scalar = private_scalar(&f.path(pem));
        secrets.push(base64_encode(&scalar));
        raw.push(scalar);
    }
    let raw: Vec<String> = raw.iter().flat_map(|bytes| [hex::encode(bytes), format!("{bytes:?}")]).collect();
    assert!(secrets.len() >= 6);
    for secret in secrets.iter().chain(&raw).filter(|s| s.len() >= 16) {
        assert!(!output.contains(secret.as_str()), "key material in the output: {secret}");
    }
}

/// The private scalar of a P-256 PKCS#8 key: the first `04 20` octet string's 32 bytes.
fn private_scalar(pem: &Path) -> Vec<u8> {
    let body: String = std::fs::read_to_string(pem).unwrap().lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&body).unwrap();
    let at = der.windows(2).position(|w| w == [0x04, 0x20]).expect("an EC private key");
    der[at + 2..at + 34].to_vec()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}
