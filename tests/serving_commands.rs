//! The node's commands run beside a serving node, in a loop, while staff keep opening records:
//! no command fails for a race, and no view is refused.
//!
//! Finding (reliability 2): enrolling operators while views were served made 60 `staff add` fail
//! with `UNIQUE constraint failed: audit.seq` after their staff rows were committed, and 917 of
//! 23,100 concurrent views got 503; `snapshot import` on a serving node failed 4 times in 6.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Fixture, Spawned, csv_rows, ok};
use serde_json::{Value, json};

const ROUNDS: u32 = 4;
const VIEWERS: usize = 6;

/// Runs a command of the binary off the async runtime; panics with its output if it fails.
async fn command(f: &Arc<Fixture>, args: Vec<String>) -> String {
    let f = f.clone();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&args, f.dir())
    })
    .await
    .unwrap()
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|a| a.to_string()).collect()
}

/// An authorization with id `id` and serial `serial` over the newest snapshot, written to `out`.
fn authorize(id: &str, serial: u32, out: &str) -> Vec<String> {
    let mut args = strings(&Fixture::drill_args("n", "172049,172057", out));
    args.extend(strings(&["--days", "30", "--id", id, "--serial", &serial.to_string()]));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn staff_add_and_imports_beside_a_serving_node_never_race_it_and_no_view_is_refused() {
    let f = Arc::new(Fixture::new(60));
    f.node("n", "17");
    ok(&["snapshot", "import", "--dir", "n", "region.kfsnap", "--quiet"], f.dir());
    let args = authorize("drill-loop", 1, "a1.kfauth");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), f.dir());
    ok(&["authz", "import", "--dir", "n", "a1.kfauth"], f.dir());
    let out = ok(
        &["staff", "add", "--dir", "n", "--name", "能登 花子", "--facility", "1772090005", "--role", "support"],
        f.dir(),
    );
    let token = common::enrolled(&out).2;

    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    let http = common::https_client(&f.path("n/tls/ca.pem"));

    // A few people, found by their cards.
    let rows = csv_rows(&f.path("persons.csv"));
    let mut people = Vec::new();
    for r in rows.iter().take(4) {
        let card = json!({ "insurer_number": r["card_insurer_number"], "insured_number": r["insured_number"], "birth_date": r["birth_date"] });
        let body: Value = http
            .post(format!("{url}api/v1/search"))
            .bearer_auth(&token)
            .json(&card)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        people.push(body["candidates"][0]["person_id"].as_str().expect("found by card").to_owned());
    }

    // Staff opening records the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut viewers = Vec::new();
    for v in 0..VIEWERS {
        let (http, url, token, people, stop) = (http.clone(), url.clone(), token.clone(), people.clone(), stop.clone());
        viewers.push(tokio::spawn(async move {
            let (mut answered, mut refused) = (0u32, Vec::new());
            let mut i = v;
            while !stop.load(Ordering::Relaxed) {
                let person = &people[i % people.len()];
                i += 1;
                let r = http
                    .get(format!("{url}api/v1/person/{person}?purpose=medical"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                if status == 200 {
                    answered += 1;
                } else {
                    refused.push(format!("{status}: {}", r.text().await.unwrap_or_default()));
                }
            }
            (answered, refused)
        }));
    }

    for round in 0..ROUNDS {
        // An operator enrolled, a newer snapshot imported, and the authorization's next serial
        // for it (the same authorization, so the operators enrolled under it keep working).
        let name = format!("職員 {round}");
        let out = command(
            &f,
            strings(&[
                "staff",
                "add",
                "--dir",
                "n",
                "--name",
                &name,
                "--facility",
                "1772090005",
                "--role",
                "receiving",
            ]),
        )
        .await;
        assert!(out.contains("ログインコード"), "{out}");
        let snap = format!("v{}.kfsnap", round + 2);
        let f2 = f.clone();
        let s2 = snap.clone();
        tokio::task::spawn_blocking(move || f2.snapshot(&s2)).await.unwrap();
        command(&f, strings(&["snapshot", "import", "--dir", "n", &snap, "--quiet"])).await;
        let code = format!("a{}.kfauth", round + 2);
        command(&f, authorize("drill-loop", round + 2, &code)).await;
        let out = command(&f, strings(&["authz", "import", "--dir", "n", &code])).await;
        assert!(out.contains("認可を取り込みました"), "{out}");
    }
    stop.store(true, Ordering::Relaxed);

    let (mut answered, mut refused) = (0, Vec::new());
    for v in viewers {
        let (a, r) = v.await.unwrap();
        answered += a;
        refused.extend(r);
    }
    assert!(
        refused.is_empty(),
        "{} of {} views refused, first: {:?}",
        refused.len(),
        answered as usize + refused.len(),
        refused.first()
    );
    assert!(answered >= 50, "only {answered} views while the commands ran");

    // The node serves the newest snapshot under the newest serial.
    let status: Value = http.get(format!("{url}api/v1/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["snapshot"]["version"], ROUNDS + 1, "{status}");
    let r =
        http.get(format!("{url}api/v1/person/{}?purpose=medical", people[0])).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let (exit, output) = server.terminate();
    assert!(exit.success(), "{output}");
    let verify = ok(&["audit", "verify", "--dir", "n"], f.dir());
    assert!(verify.contains("正常"), "{verify}");
    eprintln!("{answered} views answered while {ROUNDS} rounds of staff add, snapshot import and authz import ran");
}
