//! The main job end to end: `kaigo-field demo` builds a central, a synthetic region and a node,
//! serves the status page over HTTPS (rustls), and stops cleanly on SIGTERM.

mod common;

use std::path::Path;

use common::{Spawned, csv_rows};

fn start(dir: &std::path::Path) -> (Spawned, String) {
    let dir = dir.to_str().unwrap();
    let mut demo =
        Spawned::start(&["demo", "--dir", dir, "--listen", "127.0.0.1:0", "--persons", "300"], Path::new("."), &[]);
    let url = demo.url();
    (demo, url)
}

fn client(dir: &Path) -> reqwest::Client {
    // Trust the central's CA, which signed the node's certificate at enrolment.
    common::https_client(&dir.join("node/tls/ca.pem"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_status_page_over_https_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let (demo, url) = start(&dir);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let http = client(&dir);

    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let body = page.text().await.unwrap();
    for expected in [
        "ノードの状態",
        "輪島市",
        "珠洲市",
        "300人",
        "有効：検索できます（訓練）",
        "訓練：奥能登地震（デモ）",
        "訓練 ― 合成データです",
        "合成データ（訓練・デモ用）",
    ] {
        assert!(body.contains(expected), "status page lacks {expected}");
    }

    // The status page shows nobody: no name from the region is on it.
    for r in csv_rows(&dir.join("persons.csv")) {
        assert!(!body.contains(&format!("{}{}", r["family_name"], r["given_name"])));
        assert!(!body.contains(&r["insured_number"]));
    }

    let css = http.get(format!("{url}static/style.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    let missing = http.get(format!("{url}no-such-page")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("ページがありません"));

    // A plain-HTTP client gets no page: the node speaks only TLS.
    let plain = reqwest::Client::new().get(url.replace("https://", "http://")).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    // The demo's support worker can search over the API with the printed token.
    let token = std::fs::read_to_string(dir.join("demo-staff.token")).unwrap();
    let rows = csv_rows(&dir.join("persons.csv"));
    let r = &rows[3];
    let query = serde_json::json!({
        "name": format!("{} {}", r["family_name_kana"], r["given_name_kana"]),
        "birth_date": r["birth_date"],
        "sex": if r["sex"] == "1" { "男" } else { "女" },
    });
    let found = common::api_search(&http, &url, &token, &query).await;
    assert_eq!(found["candidates"][0]["name"], format!("{} {}", r["family_name"], r["given_name"]), "{found}");

    // Searching on the pages needs a session: the entry sends to the sign-in page.
    let search = http.get(format!("{url}search")).send().await.unwrap();
    assert_eq!(search.url().path(), "/login");
    // Once the coordinator closes the authorization, the API refuses with the reason.
    let out = common::ok(&["authz", "close", "--dir", dir.join("node").to_str().unwrap()], tmp.path());
    assert!(out.contains("demo-drill"), "{out}");
    let closed = http.post(format!("{url}api/v1/search")).bearer_auth(token.trim()).json(&query).send().await.unwrap();
    assert_eq!(closed.status(), 403);
    let page = closed.text().await.unwrap();
    assert!(page.contains("終了しました") && page.contains("コーディネーターが終了"), "{page}");
    let status_page = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(status_page.contains("無効：検索はできません"));

    let (status, _) = demo.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");

    // A second start reuses the demo instead of rebuilding it, and asks for a new drill window
    // because the coordinator closed the last one.
    let (demo, url2) = start(&dir);
    let again = client(&dir).get(&url2).send().await.unwrap().text().await.unwrap();
    assert!(again.contains("300人") && again.contains("有効：検索できます"), "{again}");
    assert!(demo.terminate().0.success());
}
