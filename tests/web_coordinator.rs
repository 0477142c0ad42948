//! The node's first coordinator, end to end: made at `node init` (a passphrase given, checked
//! before anything is written, or generated and printed once), signs in with no authorization
//! and sees no personal data, then imports an authorization by pasting its text code on the
//! management page, and closes it again; every step is in the audit log.

mod common;

use common::{Fixture, Spawned, csrf_of, https_session, run_env};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_coordinator_signs_in_without_an_authorization_and_imports_one_on_the_page() {
    let f = Fixture::new(60);
    common::ok(
        &["central", "enroll-node", "--dir", "central", "--node-id", "n", "--region", "17", "--out", "n.bundle"],
        f.dir(),
    );

    // A passphrase too short is refused before the node directory is made.
    let weak = run_env(
        &["node", "init", "--dir", "n", "--bundle", "n.bundle"],
        f.dir(),
        &[("KAIGO_FIELD_COORDINATOR_PASSPHRASE", "short")],
    );
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("パスフレーズは8文字以上"));
    assert!(!f.path("n/node.db").exists(), "nothing half-made is left");

    // With no terminal and none given, one is generated and printed once.
    let out =
        common::ok(&["node", "init", "--dir", "n", "--bundle", "n.bundle", "--coordinator", "輪島 調整"], f.dir());
    let coordinator = common::first_coordinator_id(&out);
    assert!(out.contains(&format!("職員ID {coordinator}（輪島 調整）")), "{out}");
    assert!(kaigo_field::staff::is_staff_id(&coordinator) && !coordinator.starts_with("staff-"), "{coordinator}");
    let passphrase =
        out.lines().find_map(|l| l.split("控えてください）: ").nth(1)).expect("printed once").trim().to_owned();
    common::ok(&["snapshot", "import", "--dir", "n", "region.kfsnap", "--quiet"], f.dir());

    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    let c = https_session(&f.path("n/tls/ca.pem"));
    let page = c.get(format!("{url}login")).send().await.unwrap().text().await.unwrap();
    let r = c
        .post(format!("{url}login"))
        .form(&[("csrf", csrf_of(&page).as_str()), ("staff_id", coordinator.as_str()), ("secret", passphrase.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Signed in, but with no authorization nothing personal opens.
    let r = c.get(format!("{url}search")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("災害認可がありません"));
    let manage = c.get(format!("{url}manage")).send().await.unwrap().text().await.unwrap();
    assert!(manage.contains("災害認可が有効なときだけ職員を登録できます"), "{manage}");

    // The central's text code, pasted into the page.
    let mut args = Fixture::drill_args("n", "172049,172057", "a.kfauth");
    args.extend(["--id", "drill-1", "--text"]);
    let issued = common::ok(&args, f.dir());
    let code = issued.lines().find(|l| l.starts_with("KFA1-")).expect("a text code").to_owned();
    let form = reqwest::multipart::Form::new().text("csrf", csrf_of(&manage)).text("code", code);
    let r = c.post(format!("{url}manage/authz/import")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("認可を取り込みました"));
    let r = c.get(format!("{url}search")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // An extension (the next serial) arrives as a file and is uploaded.
    let mut args = Fixture::drill_args("n", "172049,172057", "b.kfauth");
    args.extend(["--id", "drill-1", "--days", "3"]);
    let issued = common::ok(&args, f.dir());
    assert!(issued.contains("連番 2"), "{issued}");
    let manage = c.get(format!("{url}manage")).send().await.unwrap().text().await.unwrap();
    let file = reqwest::multipart::Part::bytes(std::fs::read(f.path("b.kfauth")).unwrap()).file_name("b.kfauth");
    let form = reqwest::multipart::Form::new().text("csrf", csrf_of(&manage)).part("file", file);
    let r = c.post(format!("{url}manage/authz/import")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("認可を取り込みました") && page.contains("連番 2"), "{page}");

    // The log, and one person's history after the coordinator opened their record.
    let rows = common::csv_rows(&f.path("persons.csv"));
    let form = c.get(format!("{url}search")).send().await.unwrap().text().await.unwrap();
    let r = c
        .post(format!("{url}search"))
        .form(&[
            ("csrf", csrf_of(&form).as_str()),
            ("insurer_number", rows[4]["insurer_number"].as_str()),
            ("insured_number", rows[4]["insured_number"].as_str()),
            ("card_birth_date", rows[4]["birth_date"].as_str()),
        ])
        .send()
        .await
        .unwrap();
    let results = r.text().await.unwrap();
    assert!(results.contains("この人である可能性が高いです"), "the card route finds the person: {results}");
    let start = results.find("href=\"/person/").unwrap() + "href=\"/person/".len();
    let person = results[start..start + 32].to_owned();
    let ask = c.get(format!("{url}person/{person}")).send().await.unwrap().text().await.unwrap();
    c.post(format!("{url}person/{person}/purpose"))
        .form(&[("csrf", csrf_of(&ask).as_str()), ("purpose", "other"), ("purpose_text", "家族からの安否確認")])
        .send()
        .await
        .unwrap();
    let record = c.get(format!("{url}person/{person}")).send().await.unwrap().text().await.unwrap();
    assert!(record.contains("その他：家族からの安否確認"));
    assert!(!record.contains("ADL"), "a coordinator sees only card, certification and care manager");
    let log = c.get(format!("{url}manage/audit")).send().await.unwrap().text().await.unwrap();
    assert!(log.contains("authorization_import") && log.contains(&coordinator), "{log}");
    let history = c.get(format!("{url}manage/audit?person={person}")).send().await.unwrap().text().await.unwrap();
    assert!(history.contains("一人の閲覧履歴") && history.contains("その他：家族からの安否確認"), "{history}");
    assert!(history.contains(">view<") && history.contains(">search<"), "{history}");

    // A forged code is refused with the reason, and logged.
    let manage = c.get(format!("{url}manage")).send().await.unwrap().text().await.unwrap();
    let form = reqwest::multipart::Form::new().text("csrf", csrf_of(&manage)).text("code", "KFA1-NOT-A-CODE");
    let r = c.post(format!("{url}manage/authz/import")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let manage = c.get(format!("{url}manage")).send().await.unwrap().text().await.unwrap();
    let r = c.post(format!("{url}manage/authz/close")).form(&[("csrf", csrf_of(&manage))]).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("を終了しました"));
    assert_eq!(c.get(format!("{url}search")).send().await.unwrap().status(), StatusCode::FORBIDDEN);

    assert!(server.terminate().0.success());
    let export = common::ok(&["audit", "export", "--dir", "n"], f.dir());
    let by_coordinator: Vec<serde_json::Value> = export
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["operator"] == coordinator.as_str())
        .collect();
    for action in ["login", "authorization_import", "authorization_refused", "authorization_close", "search", "view"] {
        assert!(by_coordinator.iter().any(|e| e["action"] == action), "{action} is not in the log");
    }
    assert!(common::ok(&["audit", "verify", "--dir", "n"], f.dir()).contains("正常"));
}
