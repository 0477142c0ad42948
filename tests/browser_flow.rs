//! The whole job in a real browser (headless Chromium at phone width over HTTPS, against the real
//! `demo` process): a coordinator enrols a staff member; the staff member signs in with the
//! one-time code, sets a PIN, finds an evacuee by kana name and 和暦 birth date, opens the record
//! with a purpose, records where the person is now and opens the handover sheet; a support role
//! does not see what only a receiving facility may; and after the coordinator moves the clock
//! past the window, the same staff member gets the closed page. Every page passes the
//! accessibility floor; screenshots go to target/screenshots/.

mod common;

use std::path::Path;

use chrono::NaiveDate;
use common::browser::{Browser, PHONE_WIDTH};
use common::{Spawned, csv_rows, demo_logins};
use kaigo_field::model::wareki::to_wareki;

async fn sign_in(b: &Browser, url: &str, id: &str, secret: &str) {
    b.goto(&format!("{url}login")).await;
    b.assert_accessible().await;
    b.fill("#staff_id", id).await;
    b.fill("#secret", secret).await;
    b.submit("form[action='/login']").await;
}

async fn sign_out(b: &Browser) {
    b.submit("form[action='/logout']").await;
    assert!(b.current_url().await.ends_with("/login"));
}

/// Searches by name and birth date and opens the first candidate with `purpose`.
async fn find_and_open(b: &Browser, url: &str, kana: &str, wareki: &str, purpose: &str, shot: &str) {
    b.goto(&format!("{url}search")).await;
    b.assert_accessible().await;
    b.fill("#name", kana).await;
    b.fill("#birth_date", wareki).await;
    b.submit("form[action='/search']").await;
    let results = b.page_source().await;
    assert!(results.contains("この人である可能性が高いです"), "{results}");
    b.assert_accessible().await;
    b.screenshot(&format!("{shot}-results")).await;
    let link = b.attr("ol.candidates a.button", "href").await.expect("a candidate to open");
    b.goto(&format!("{}{}", url.trim_end_matches('/'), link)).await;
    assert_eq!(b.text("h1").await, "記録を開く目的");
    b.assert_accessible().await;
    b.check(&format!("input[name=purpose][value={purpose}]")).await;
    b.submit("form[action$='/purpose']").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_sign_in_find_open_record_hand_over_and_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut demo = Spawned::start(
        &["demo", "--dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--persons", "600"],
        Path::new("."),
        &[],
    );
    let url = demo.url();
    let logins = demo_logins(&dir);
    let rows = csv_rows(&dir.join("persons.csv"));
    let r = &rows[11];
    let kana =
        kaigo_field::model::kana::katakana_to_hiragana(&format!("{} {}", r["family_name_kana"], r["given_name_kana"]));
    let wareki = to_wareki(NaiveDate::parse_from_str(&r["birth_date"], "%Y-%m-%d").unwrap()).unwrap().kanji();
    let name = format!("{} {}", r["family_name"], r["given_name"]);

    // The coordinator enrols a support worker who has just arrived.
    let coordinator = Browser::start().await;
    coordinator.set_width(PHONE_WIDTH).await;
    // A mistyped passphrase says how many tries are left before this phone must wait.
    sign_in(&coordinator, &url, &logins[0].0, "mistyped passphrase").await;
    assert!(coordinator.page_source().await.contains("あと4回間違えると"));
    coordinator.assert_accessible().await;
    coordinator.screenshot("login-wrong").await;
    coordinator.set_width(1280).await;
    coordinator.screenshot("login-wrong-wide").await;
    coordinator.set_width(PHONE_WIDTH).await;
    sign_in(&coordinator, &url, &logins[0].0, &logins[0].1).await;
    coordinator.goto(&format!("{url}manage")).await;
    assert_eq!(coordinator.text("h1").await, "管理");
    coordinator.assert_accessible().await;
    coordinator.screenshot("manage").await;
    coordinator.fill("#name", "能登 花子").await;
    coordinator.fill("#organisation", "DWAT石川").await;
    coordinator.fill("#facility", "1772090005").await;
    coordinator.check("input[name=role][value=support]").await;
    coordinator.submit("form[action='/manage/staff']").await;
    assert_eq!(coordinator.text("h1").await, "登録しました");
    coordinator.assert_accessible().await;
    coordinator.screenshot("enrolled").await;
    let staff_id = coordinator.text("#staff-id").await;
    let code = coordinator.text("#login-code").await;
    assert_eq!(code.len(), 10, "{code}");

    // The support worker signs in with the code on their own phone and sets a PIN.
    let staff = Browser::start().await;
    staff.set_width(PHONE_WIDTH).await;
    sign_in(&staff, &url, &staff_id, &code).await;
    assert!(staff.current_url().await.ends_with("/pin"));
    assert_eq!(staff.text("h1").await, "PIN の設定");
    staff.assert_accessible().await;
    staff.fill("#secret", "123456").await;
    staff.fill("#again", "123456").await;
    staff.submit("form[action='/pin']").await;
    assert!(staff.page_source().await.contains("連番"), "a trivial PIN is refused with the rule");
    staff.fill("#secret", "240815").await;
    staff.fill("#again", "240815").await;
    staff.submit("form[action='/pin']").await;
    assert!(staff.current_url().await.ends_with("/search"));
    // The code was for once only; the PIN works from now on.
    sign_out(&staff).await;
    sign_in(&staff, &url, &staff_id, &code).await;
    assert!(staff.current_url().await.ends_with("/login"));
    sign_in(&staff, &url, &staff_id, "240815").await;
    assert!(staff.current_url().await.ends_with("/search"));

    // Find the evacuee by what a neighbour says, open the record for 生活支援.
    find_and_open(&staff, &url, &kana, &wareki, "life_support", "support").await;
    assert_eq!(staff.text("h1").await.replace(' ', ""), format!("{}さんの記録", name.replace(' ', "")));
    let record = staff.page_source().await;
    assert!(record.contains("生活支援") && record.contains("要介護認定") && record.contains("ADL"));
    assert!(!record.contains("負担割合"), "a support worker must not see 負担割合");
    staff.assert_accessible().await;
    staff.screenshot("person-support").await;

    // Where the person is now, and a note for whoever takes them next.
    staff.check("input[name=place][value=hospital]").await;
    staff.fill("#place_name", "市立輪島病院").await;
    staff.fill("#note", "透析は火・木・土。眼鏡を持参").await;
    staff.submit("form[action$='/events']").await;
    let record = staff.page_source().await;
    assert!(record.contains("病院：市立輪島病院") && record.contains("眼鏡を持参"));

    // The handover sheet, for the receiving facility.
    let sheet = staff.attr("a[href$='/handover']", "href").await.unwrap();
    staff.goto(&format!("{}{}", url.trim_end_matches('/'), sheet)).await;
    assert_eq!(staff.text("h1").await, "申し送り書");
    let page = staff.page_source().await;
    assert!(page.contains("病院：市立輪島病院") && page.contains("監査番号"));
    assert!(page.replace(' ', "").contains(&name.replace(' ', "")));
    staff.assert_accessible().await;
    staff.screenshot("handover").await;
    // Printed, the sheet carries no menus or forms.
    let hidden = staff
        .js(
            "const s = [...document.styleSheets].flatMap(x => [...x.cssRules]).find(r => r.media && r.media.mediaText === 'print'); return s ? s.cssText : ''",
            vec![],
        )
        .await;
    assert!(hidden.as_str().unwrap().contains("header nav"), "{hidden}");

    // A receiving facility sees the 負担割合 the support worker did not.
    sign_out(&coordinator).await;
    sign_in(&coordinator, &url, &logins[2].0, &logins[2].1).await;
    find_and_open(&coordinator, &url, &kana, &wareki, "receiving", "receiving").await;
    let record = coordinator.page_source().await;
    assert!(record.contains("負担割合") && record.contains("負担限度額"));
    coordinator.screenshot("person-receiving").await;

    // The coordinator moves the node's clock past the window; the same search is closed.
    sign_out(&coordinator).await;
    sign_in(&coordinator, &url, &logins[0].0, &logins[0].1).await;
    coordinator.goto(&format!("{url}manage")).await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(9 + 73)).format("%Y-%m-%dT%H:%M").to_string();
    coordinator.js("document.getElementById('to').value = arguments[0]; return null", vec![later.into()]).await;
    coordinator.submit("form[action='/manage/clock']").await;
    // First the question, with both times; the clock moves only on the confirmation.
    assert_eq!(coordinator.text("h1").await, "時計を進めますか");
    coordinator.assert_accessible().await;
    coordinator.screenshot("clock-confirm").await;
    coordinator.set_width(1280).await;
    coordinator.screenshot("clock-confirm-wide").await;
    coordinator.set_width(PHONE_WIDTH).await;
    coordinator.submit("form[action='/manage/clock']").await;
    assert!(coordinator.page_source().await.contains("に進めました"), "the clock moved");
    coordinator.goto(&format!("{url}manage/audit")).await;
    assert_eq!(coordinator.text("h1").await, "監査ログ");
    assert!(coordinator.page_source().await.contains("field_event"));
    coordinator.assert_accessible().await;
    coordinator.screenshot("audit").await;
    staff.goto(&format!("{url}search")).await;
    let closed = staff.page_source().await;
    assert!(closed.contains("終了しました") && closed.contains("期限切れ"), "{closed}");
    assert!(!closed.contains(&name) && !closed.contains("市立輪島病院"));
    staff.assert_accessible().await;
    staff.screenshot("closed").await;

    drop((staff, coordinator));
    let (status, out) = demo.terminate();
    assert!(status.success(), "{out}");
    let verified = common::ok(&["audit", "verify", "--dir", "demo/node"], tmp.path());
    assert!(verified.contains("監査ログは正常です"), "{verified}");
}
