//! The search API end to end: an operator enrolled by `staff add` searches over HTTPS with a
//! bearer token; refusals, rate limits and the audit trail.

mod common;

use chrono::NaiveDate;
use common::{Fixture, Spawned, csv_rows, fails, ok};
use kaigo_field::model::wareki::to_wareki;
use serde_json::{Value, json};

/// The staff id `staff add` printed (random, never the next number).
fn staff_id_of(out: &str) -> String {
    common::enrolled(out).0
}

fn token_of(out: &str) -> String {
    common::enrolled(out).2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_operator_finds_a_person_and_every_search_is_audited() {
    let f = Fixture::new(300);
    f.authorized_node();
    let err = fails(
        &["staff", "add", "--dir", "n", "--name", "東京 太郎", "--facility", "1372090005", "--role", "support"],
        f.dir(),
    );
    assert!(err.contains("対象事業所ではありません"), "{err}");
    let out = ok(
        &["staff", "add", "--dir", "n", "--name", "能登 花子", "--facility", "1772090005", "--role", "support"],
        f.dir(),
    );
    assert!(out.contains("ログインコード"), "{out}");
    let token = token_of(&out);
    let operator = staff_id_of(&out);
    assert!(kaigo_field::staff::is_staff_id(&operator) && !operator.starts_with("staff-"), "{operator}");

    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    let http = common::https_client(&f.path("n/tls/ca.pem"));
    let api = format!("{url}api/v1/search");

    // Someone whose name and birthday a neighbour tells: hiragana and the 和暦.
    let rows = csv_rows(&f.path("persons.csv"));
    let r = &rows[7];
    let birth = NaiveDate::parse_from_str(&r["birth_date"], "%Y-%m-%d").unwrap();
    let kana =
        kaigo_field::model::kana::katakana_to_hiragana(&format!("{} {}", r["family_name_kana"], r["given_name_kana"]));
    let query = json!({ "name": kana, "birth_date": to_wareki(birth).unwrap().kanji(), "sex": if r["sex"] == "1" { "男" } else { "女" } });
    let response = http.post(&api).bearer_auth(&token).json(&query).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-audit-seq").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["verdict"], "likely", "{body}");
    let first = &body["candidates"][0];
    assert_eq!(first["name"], format!("{} {}", r["family_name"], r["given_name"]));
    assert_eq!(first["birth_date"], r["birth_date"]);
    assert!(first["birth_date_wareki"].as_str().unwrap().contains('年'));
    let person_id = first["person_id"].as_str().unwrap().to_owned();

    // The card route.
    let card = json!({ "insurer_number": r["card_insurer_number"], "insured_number": r["insured_number"], "birth_date": r["birth_date"] });
    let body: Value = http.post(&api).bearer_auth(&token).json(&card).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["candidates"][0]["person_id"], person_id.as_str());

    // No token; not enough to search (no browsing).
    assert_eq!(http.post(&api).json(&query).send().await.unwrap().status(), 401);
    let thin = http.post(&api).bearer_auth(&token).json(&json!({ "name": kana })).send().await.unwrap();
    assert_eq!(thin.status(), 400);
    assert!(thin.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("一覧を見ることはできません"));

    // Walking the region is stopped by the per-operator limit.
    let mut limited = false;
    for _ in 0..40 {
        let s = http.post(&api).bearer_auth(&token).json(&query).send().await.unwrap().status();
        if s == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "the rate limit stops a walk through the region");

    // Closed: the API refuses, in JSON.
    ok(&["authz", "close", "--dir", "n"], f.dir());
    let closed = http.post(&api).bearer_auth(&token).json(&query).send().await.unwrap();
    assert_eq!(closed.status(), 403);
    assert!(closed.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("終了しました"));
    let (status, _) = server.terminate();
    assert!(status.success());

    // The audit trail: the search names the person by id, never by name or by what was typed.
    let export = ok(&["audit", "export", "--dir", "n"], f.dir());
    let searches: Vec<Value> = export
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "search")
        .collect();
    assert!(searches.len() >= 3, "every search is logged, refused ones too");
    assert!(searches.iter().any(|e| e["subjects"].as_array().unwrap().iter().any(|s| s == person_id.as_str())));
    assert!(searches.iter().all(|e| e["operator"] == operator.as_str() && e["facility"] == "1772090005"));
    assert!(searches.iter().all(|e| e["query_hash"].is_string()));
    for needle in [&kana, &r["family_name"], &r["insured_number"], &r["birth_date"]] {
        assert!(!export.contains(needle.as_str()), "{needle} appears in the audit log");
    }
    let person = ok(&["audit", "person", "--dir", "n", &person_id], f.dir());
    assert!(person.contains(&operator) && person.contains("search"), "{person}");
    assert!(ok(&["audit", "verify", "--dir", "n"], f.dir()).contains("正常"));
}

/// Finding 9.3: the auth scheme is case-insensitive (RFC 9110 §11.1) and may be followed by more
/// than one space (§11.4: `1*SP`); only the token itself is compared exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_matched_without_regard_to_case_or_extra_spaces() {
    let f = Fixture::new(60);
    f.authorized_node();
    let out = ok(
        &["staff", "add", "--dir", "n", "--name", "能登 花子", "--facility", "1772090005", "--role", "support"],
        f.dir(),
    );
    let token = token_of(&out);
    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    let http = common::https_client(&f.path("n/tls/ca.pem"));
    let api = format!("{url}api/v1/search");
    let rows = csv_rows(&f.path("persons.csv"));
    let r = &rows[3];
    let query = json!({ "name": format!("{} {}", r["family_name"], r["given_name"]), "birth_date": r["birth_date"] });

    for header in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
        format!("bEaReR {token}"),
        format!("Bearer   {token}"),
    ] {
        let response = http.post(&api).header("authorization", &header).json(&query).send().await.unwrap();
        assert_eq!(response.status(), 200, "refused: {header:?}");
    }
    // Still refused: another scheme, a token with a changed case (tokens are compared exactly),
    // no space between scheme and token, no token.
    let upper_token = token.to_uppercase();
    for header in [
        format!("Basic {token}"),
        format!("Bearer {upper_token}"),
        format!("Bearer{token}"),
        "Bearer ".to_owned(),
        "Bearer".to_owned(),
    ] {
        let response = http.post(&api).header("authorization", &header).json(&query).send().await.unwrap();
        assert_eq!(response.status(), 401, "accepted: {header:?}");
    }
    let (status, _) = server.terminate();
    assert!(status.success());
}

/// Finding (reliability 8): the per-operator search limit reset on every restart, so a restart
/// gave anyone walking the region a fresh allowance. The count now goes on from the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_limit_is_not_reset_by_a_restart() {
    let f = Fixture::new(100);
    f.authorized_node();
    let out = ok(
        &["staff", "add", "--dir", "n", "--name", "能登 花子", "--facility", "1772090005", "--role", "support"],
        f.dir(),
    );
    let token = token_of(&out);
    let http = common::https_client(&f.path("n/tls/ca.pem"));
    let query = json!({ "name": "のと はなこ", "birth_date": "1940-01-01", "sex": "女" });
    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    let mut allowed = 0;
    for _ in 0..kaigo_field::limits::SEARCH_RATE_PER_OPERATOR_MAX + 5 {
        let status =
            http.post(format!("{url}api/v1/search")).bearer_auth(&token).json(&query).send().await.unwrap().status();
        if status == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, kaigo_field::limits::SEARCH_RATE_PER_OPERATOR_MAX);
    assert!(server.terminate().0.success());
    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    let r = http.post(format!("{url}api/v1/search")).bearer_auth(&token).json(&query).send().await.unwrap();
    assert_eq!(r.status(), 429, "the allowance of the last minute is still spent after a restart");
    assert!(server.terminate().0.success());
}
