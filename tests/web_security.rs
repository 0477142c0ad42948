//! The web app's guards, end to end over HTTPS against the real `demo` process: no page with
//! personal data without a session, a CSRF token on every form, cookies that stay on this site,
//! revocation at the next request, lockout after repeated failures, role sections, and the JSON
//! API mirroring the pages.

mod common;

use std::path::Path;

use chrono::NaiveDate;
use common::{Spawned, csrf_of, csv_rows, demo_logins, https_session};
use kaigo_field::model::wareki::to_wareki;
use reqwest::{Client, StatusCode};

struct Demo {
    tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    url: String,
    process: Option<Spawned>,
}

impl Demo {
    /// Stops the server cleanly and checks the audit log it wrote verifies.
    fn stop_and_verify_audit(&mut self) {
        let (status, out) = self.process.take().unwrap().terminate();
        assert!(status.success(), "{out}");
        let out = common::ok(&["audit", "verify", "--dir", "demo/node"], self.tmp.path());
        assert!(out.contains("監査ログは正常です"), "{out}");
    }
}

fn start() -> Demo {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let d = dir.to_str().unwrap();
    let mut process =
        Spawned::start(&["demo", "--dir", d, "--listen", "127.0.0.1:0", "--persons", "400"], Path::new("."), &[]);
    let url = process.url();
    Demo { tmp, dir, url, process: Some(process) }
}

fn client(demo: &Demo) -> Client {
    https_session(&demo.dir.join("node/tls/ca.pem"))
}

async fn text(c: &Client, url: &str) -> (StatusCode, String) {
    let r = c.get(url).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Signs in through the form; returns the redirect target.
async fn sign_in(c: &Client, url: &str, id: &str, secret: &str) -> (StatusCode, String) {
    let (_, page) = text(c, &format!("{url}login")).await;
    let r = c
        .post(format!("{url}login"))
        .form(&[("csrf", csrf_of(&page).as_str()), ("staff_id", id), ("secret", secret)])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    (status, location.unwrap_or_else(|| "".into()) + &r.text().await.unwrap())
}

/// A person of the region, as a neighbour would say them: hiragana name and 和暦 birth date.
fn someone(dir: &Path, n: usize) -> (String, String, String, String) {
    let rows = csv_rows(&dir.join("persons.csv"));
    let r = &rows[n];
    let birth = NaiveDate::parse_from_str(&r["birth_date"], "%Y-%m-%d").unwrap();
    let kana =
        kaigo_field::model::kana::katakana_to_hiragana(&format!("{} {}", r["family_name_kana"], r["given_name_kana"]));
    (
        kana,
        to_wareki(birth).unwrap().kanji(),
        format!("{}{}", r["family_name"], r["given_name"]),
        r["insured_number"].clone(),
    )
}

async fn search(c: &Client, url: &str, name: &str, birth: &str) -> (StatusCode, String) {
    let (_, form) = text(c, &format!("{url}search")).await;
    let r = c
        .post(format!("{url}search"))
        .form(&[("csrf", csrf_of(&form).as_str()), ("name", name), ("birth_date", birth)])
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

fn person_link(results: &str) -> String {
    let start = results.find("href=\"/person/").expect("a candidate") + "href=\"".len();
    results[start..].split('"').next().unwrap().to_owned()
}

/// Opens a person's record: the purpose question first, then the record.
async fn open_person(c: &Client, url: &str, link: &str, purpose: &str) -> (StatusCode, String) {
    let (_, ask) = text(c, &format!("{url}{}", &link[1..])).await;
    assert!(ask.contains("記録を開く目的"), "the purpose is asked first");
    let r = c
        .post(format!("{url}{}/purpose", &link[1..]))
        .form(&[("csrf", csrf_of(&ask).as_str()), ("purpose", purpose)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    text(c, &format!("{url}{}", &link[1..])).await
}

fn names_absent(dir: &Path, body: &str) {
    for r in csv_rows(&dir.join("persons.csv")) {
        assert!(!body.contains(&format!("{} {}", r["family_name"], r["given_name"])), "a name leaked");
        assert!(!body.contains(&r["insured_number"]), "a card number leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_needs_a_session_forms_need_their_token_and_roles_see_their_sections() {
    let mut demo = start();
    let url = demo.url.clone();
    let logins = demo_logins(&demo.dir);
    let (support_id, support_pin) = &logins[1];
    let (receiving_id, receiving_pin) = &logins[2];
    let (kana, birth, kanji, insured) = someone(&demo.dir, 5);

    // Nobody signed in: every page with personal data sends to the sign-in page, carrying none.
    let anon = client(&demo);
    let any_person = "/person/00000000000000000000000000000000";
    for path in ["search", &any_person[1..], "manage", "manage/audit"] {
        let r = anon.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.headers()["location"], "/login", "{path}");
        names_absent(&demo.dir, &r.text().await.unwrap());
    }
    let r = anon
        .post(format!("{url}search"))
        .form(&[("name", kana.as_str()), ("birth_date", birth.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    names_absent(&demo.dir, &r.text().await.unwrap());

    // The sign-in form itself needs its token.
    let r = anon
        .post(format!("{url}login"))
        .form(&[("csrf", "forged"), ("staff_id", support_id.as_str()), ("secret", support_pin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Signed in, the session cookie stays on this site and out of scripts' reach.
    let support = client(&demo);
    let (_, page) = text(&support, &format!("{url}login")).await;
    let r = support
        .post(format!("{url}login"))
        .form(&[("csrf", csrf_of(&page).as_str()), ("staff_id", support_id.as_str()), ("secret", support_pin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/search");
    let set_cookie: Vec<String> =
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let session = set_cookie.iter().find(|c| c.starts_with("kf_session=")).expect("a session cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }

    // A form without its token does nothing and shows nothing.
    let r = support
        .post(format!("{url}search"))
        .form(&[("name", kana.as_str()), ("birth_date", birth.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    names_absent(&demo.dir, &r.text().await.unwrap());

    let (status, results) = search(&support, &url, &kana, &birth).await;
    assert_eq!(status, StatusCode::OK);
    assert!(results.contains("この人である可能性が高いです"), "{results}");
    let link = person_link(&results);

    // The purpose form needs its token too.
    let r = support.post(format!("{url}{}/purpose", &link[1..])).form(&[("purpose", "medical")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let r = support.get(format!("{url}{}", &link[1..])).send().await.unwrap();
    let headers = r.headers().clone();
    assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");

    // Support staff see the person but never the burden section; a receiving facility does.
    let (status, record) = open_person(&support, &url, &link, "life_support").await;
    assert_eq!(status, StatusCode::OK);
    assert!(record.replace(' ', "").contains(&kanji) && record.contains(&insured));
    assert!(record.contains("要介護認定") && record.contains("ADL") && record.contains("緊急連絡先"));
    assert!(!record.contains("負担割合"), "support staff must not see 負担割合");

    let receiving = client(&demo);
    let (status, to) = sign_in(&receiving, &url, receiving_id, receiving_pin).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/search"));
    let (_, results) = search(&receiving, &url, &kana, &birth).await;
    let (_, record) = open_person(&receiving, &url, &person_link(&results), "receiving").await;
    assert!(record.contains("負担割合") && record.contains("負担限度額"));

    // The handover sheet is audited like a view.
    let r = support.get(format!("{url}{}/handover", &link[1..])).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("x-audit-seq").is_some());

    demo.stop_and_verify_audit();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_lockout_clock_correction_and_the_api_mirror() {
    let mut demo = start();
    let url = demo.url.clone();
    let logins = demo_logins(&demo.dir);
    let (coordinator_id, coordinator_pass) = &logins[0];
    let (support_id, support_pin) = &logins[1];
    let (receiving_id, receiving_pin) = &logins[2];
    let token = std::fs::read_to_string(demo.dir.join("demo-staff.token")).unwrap();
    let (kana, birth, kanji, _) = someone(&demo.dir, 9);

    // The API mirrors the pages: search, the person by role with a purpose, field events.
    let api = client(&demo);
    let found = common::api_search(&api, &url, &token, &serde_json::json!({ "name": kana, "birth_date": birth })).await;
    let person_id = found["candidates"][0]["person_id"].as_str().unwrap().to_owned();
    let person = format!("{url}api/v1/person/{person_id}");
    let r = api.get(&person).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a purpose is required");
    let r = api.get(format!("{person}?purpose=medical")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a token is required");
    let r = api.get(format!("{person}?purpose=medical")).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("x-audit-seq").is_some());
    let view: serde_json::Value = r.json().await.unwrap();
    assert_eq!(view["purpose"], "医療連携");
    assert_eq!(view["record"]["card"]["name"].as_str().unwrap().replace(' ', ""), kanji);
    assert!(view["record"]["burden"].is_null(), "support staff never get the burden section");
    assert!(view["record"]["medical"].is_object());
    let r = api
        .post(format!("{person}/events"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({ "place": "hospital", "place_name": "", "note": "" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a hospital needs its name");
    let r = api
        .post(format!("{person}/events"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({ "place": "hospital", "place_name": "市立輪島病院", "note": "透析は火木土" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let events: serde_json::Value = api
        .get(format!("{person}/events?purpose=receiving"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events[0]["place_name"], "市立輪島病院");
    assert_eq!(events[0]["staff_id"], support_id.as_str());

    // The note is personal data: on disk it is sealed, never in clear.
    let disk = common::all_bytes(&demo.dir.join("node"));
    assert!(!common::contains(&disk, "市立輪島病院") && !common::contains(&disk, "透析は火木土"));

    // Five wrong secrets lock an account; the right one is then refused too.
    let someone_else = client(&demo);
    for _ in 0..5 {
        let (status, _) = sign_in(&someone_else, &url, receiving_id, "999999999").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, page) = sign_in(&someone_else, &url, receiving_id, receiving_pin).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("までログインできません"), "{page}");

    // A revoked person is out at their next request, on the pages and in the API.
    let support = client(&demo);
    assert_eq!(sign_in(&support, &url, support_id, support_pin).await.0, StatusCode::SEE_OTHER);
    assert_eq!(search(&support, &url, &kana, &birth).await.0, StatusCode::OK);
    // A clock fault is not the end of anyone's access: while the node's clock is behind its
    // trusted time the pages refuse with that reason (503), and the session is still there
    // once the clock is right.
    let db = rusqlite::Connection::open(demo.dir.join("node/node.db")).unwrap();
    let mark = |t: chrono::DateTime<chrono::Utc>| {
        db.execute("UPDATE trusted_time SET high_water = ?1", [t]).unwrap();
    };
    mark(chrono::Utc::now() + chrono::Duration::days(1));
    let (status, page) = text(&support, &format!("{url}search")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.contains("時計"), "{page}");
    mark(chrono::Utc::now() - chrono::Duration::hours(1));
    assert_eq!(text(&support, &format!("{url}search")).await.0, StatusCode::OK);

    let coordinator = client(&demo);
    assert_eq!(sign_in(&coordinator, &url, coordinator_id, coordinator_pass).await.0, StatusCode::SEE_OTHER);
    let (_, manage) = text(&coordinator, &format!("{url}manage")).await;
    let r = coordinator
        .post(format!("{url}manage/staff/{support_id}/revoke"))
        .form(&[("csrf", csrf_of(&manage).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("取り消しました"));
    let r = support.get(format!("{url}search")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login");
    names_absent(&demo.dir, &r.text().await.unwrap());
    let (status, page) = sign_in(&support, &url, support_id, support_pin).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("取り消されています"), "{page}");
    let r = api.get(format!("{person}?purpose=medical")).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Moving the node's clock forward corrects the time; it is not idle time, so the
    // coordinator who does it stays signed in (the idle rule itself: `staff::session_age`).
    let (_, manage) = text(&coordinator, &format!("{url}manage")).await;
    let now_jst = chrono::Utc::now() + chrono::Duration::hours(9);
    let to = (now_jst + chrono::Duration::minutes(30)).format("%Y-%m-%dT%H:%M").to_string();
    let r = coordinator
        .post(format!("{url}manage/clock"))
        .form(&[("csrf", csrf_of(&manage).as_str()), ("to", to.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("時計を"), "the coordinator stays signed in across the correction");
    let (status, _) = text(&coordinator, &format!("{url}manage")).await;
    assert_eq!(status, StatusCode::OK);

    demo.stop_and_verify_audit();
}
