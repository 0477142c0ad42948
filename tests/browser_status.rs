//! The status page in a real browser: headless Chromium on a 360 px phone screen opens the
//! HTTPS page of `kaigo-field demo`, and the page passes the accessibility checks of
//! `common::browser`. Also checks the browser helpers themselves on a small local form.

mod common;

use std::path::Path;

use common::Spawned;
use common::browser::{Browser, PHONE_WIDTH};

/// `kaigo-field demo` in `dir`, and the URL of its status page.
fn demo(dir: &Path) -> (Spawned, String) {
    let dir = dir.to_str().unwrap();
    let mut demo =
        Spawned::start(&["demo", "--dir", dir, "--listen", "127.0.0.1:0", "--persons", "50"], Path::new("."), &[]);
    let url = demo.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    (demo, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_reads_well_on_a_phone() {
    let tmp = tempfile::tempdir().unwrap();
    let (demo, url) = demo(&tmp.path().join("demo"));
    let browser = Browser::start().await;
    browser.set_width(PHONE_WIDTH).await;

    browser.goto(&url).await;
    assert_eq!(browser.attr("html", "lang").await.as_deref(), Some("ja"));
    assert_eq!(browser.text("h1").await, "ノードの状態");
    assert_eq!(browser.client().title().await.unwrap(), "ノードの状態 – kaigo-field");
    let sections = browser.page_source().await;
    for expected in ["災害認可", "スナップショット", "このノード", "有効：検索できます（訓練）"]
    {
        assert!(sections.contains(expected), "the status page lacks {expected}");
    }
    let shot = browser.screenshot("status").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "{}", shot.display());
    browser.assert_accessible().await;

    drop(browser);
    assert!(demo.terminate().0.success());
}

/// A `data:` URL of a page with a form of every kind of field that sends a GET to `action`, so
/// the next URL shows what was sent. Three faults on purpose: a field without a label, a skipped
/// heading level and an element too wide for a phone.
fn form_page(action: &str) -> String {
    let html = format!(
        r#"<!DOCTYPE html><html lang="ja"><head><meta charset="utf-8"><title>フォーム</title></head>
<body><h1>フォーム</h1><form id="f" action="{action}" method="get">
<label for="name">氏名</label><input id="name" name="name" value="消す文字">
<label>性別 <select id="sex" name="sex"><option value="1">男</option><option value="2">女</option></select></label>
<label><input type="checkbox" id="ok" name="ok" value="はい"> 同意</label>
<input type="radio" id="r1" name="r" value="a" aria-label="A"><input type="radio" id="r2" name="r" value="b" aria-label="B">
<button>送信</button></form>
<input id="unlabelled"><h3>飛ばした見出し</h3><pre style="width: 500px">幅の広い要素</pre></body></html>"#
    );
    format!("data:text/html;charset=utf-8;base64,{}", base64_encode(html.as_bytes()))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_helpers_fill_and_submit_a_form() {
    let tmp = tempfile::tempdir().unwrap();
    let (demo, url) = demo(&tmp.path().join("demo"));
    let browser = Browser::start().await;
    browser.goto(&form_page(&format!("{url}no-such-page"))).await;

    // The checks find what is wrong with this page.
    let problems = browser.accessibility_problems().await;
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("input#unlabelled") && problems[0].contains("no label"), "{problems:#?}");
    assert!(problems[1].contains("<h3>") && problems[1].contains("<h1>"), "{problems:#?}");
    assert!(problems[2].contains("horizontal scrolling") && problems[2].contains("pre"), "{problems:#?}");

    browser.fill("#name", "山田 太郎").await;
    browser.select("#sex", "2").await;
    browser.check("#ok").await;
    browser.check("#r2").await;
    browser.submit("#f").await;

    // The demo answers with its 404 page; the URL tells what the form sent.
    let sent = browser.current_url().await;
    assert!(sent.starts_with(&format!("{url}no-such-page?")), "{sent}");
    let query = sent.split_once('?').unwrap().1;
    let expected = "name=%E5%B1%B1%E7%94%B0+%E5%A4%AA%E9%83%8E&sex=2&ok=%E3%81%AF%E3%81%84&r=b";
    assert_eq!(query, expected);
    assert!(browser.text("main").await.contains("ページがありません"));

    drop(browser);
    assert!(demo.terminate().0.success());
}
