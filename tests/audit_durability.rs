//! Write before serve, tested on a real process: killed with SIGKILL at random moments, the node
//! never loses an entry whose response a client received; and when the audit log cannot be
//! written, nothing is served.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fixture, Spawned};
use kaigo_field::node::{Node, NodeDir};
use rand::{Rng, SeedableRng};

/// A node holding a snapshot under an active drill authorization.
fn authorized_node(persons: u64) -> Fixture {
    let f = Fixture::new(persons);
    f.authorized_node();
    f
}

/// An enrolled operator's API token, and one person of the region found through the API: what
/// the rounds below ask for (a record view, audited with its purpose).
async fn operator_and_person(f: &Fixture) -> (String, String) {
    let out = common::ok(
        &["staff", "add", "--dir", "n", "--name", "能登 花子", "--facility", "1772090005", "--role", "receiving"],
        f.dir(),
    );
    let token = out.lines().find(|l| l.starts_with("kft_")).expect("a token").trim().to_owned();
    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    let rows = common::csv_rows(&f.path("persons.csv"));
    let r = &rows[3];
    let query = serde_json::json!({
        "name": format!("{} {}", r["family_name"], r["given_name"]), "birth_date": r["birth_date"],
    });
    let http = common::https_client(&f.path("n/tls/ca.pem"));
    let found = common::api_search(&http, &url, &token, &query).await;
    let person = found["candidates"][0]["person_id"].as_str().expect("found").to_owned();
    assert!(server.terminate().0.success());
    (token, person)
}

const KILLS: usize = 200;
const REQUESTS_PER_CLIENT_MAX: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_whose_responses_were_received_survive_sigkill_at_random_moments() {
    let f = authorized_node(20);
    let (token, person) = operator_and_person(&f).await;
    let ca = f.path("n/tls/ca.pem");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    let mut received_total = 0usize;
    for round in 0..KILLS {
        let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
        let url = server.url();
        let http = common::https_client(&ca);
        let received: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (http, received) = (http.clone(), received.clone());
                let (url, token) = (format!("{url}api/v1/person/{person}?purpose=medical"), token.clone());
                tokio::spawn(async move {
                    // A bounded number per round: the node verifies its whole log at every
                    // start, so an unbounded flood would make later rounds slow, not harder.
                    for _ in 0..REQUESTS_PER_CLIENT_MAX {
                        let Ok(response) = http.get(&url).bearer_auth(&token).send().await else { return };
                        let seq = response.headers().get("x-audit-seq").and_then(|v| v.to_str().ok()?.parse().ok());
                        let status = response.status();
                        // A response counts as received once its whole body has arrived.
                        if response.bytes().await.is_err() {
                            return;
                        }
                        if status == 200 {
                            received.lock().unwrap().insert(seq.expect("an audited page carries its entry's number"));
                        }
                    }
                })
            })
            .collect();
        // Kill at a random moment while it is serving: after the first answer (however slow the
        // machine), then a random while longer.
        for _ in 0..1000 {
            if !received.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for c in clients {
            let _ = c.await;
        }

        let node = Node::open(&NodeDir::new(f.path("n"))).unwrap();
        let stored: BTreeSet<u64> = node.store.audit_entries(1).unwrap().iter().map(|e| e.seq).collect();
        let received = received.lock().unwrap();
        let missing: Vec<&u64> = received.difference(&stored).collect();
        assert!(missing.is_empty(), "round {round}: entries {missing:?} were answered but are not on disk");
        assert!(node.verify_audit().unwrap().is_ok(), "round {round}: the chain does not verify");
        assert_eq!(node.store.integrity_check().unwrap(), "ok", "round {round}");
        received_total += received.len();
    }
    assert!(received_total >= KILLS, "requests were answered between the kills: {received_total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_audit_log_cannot_be_written_nothing_is_served() {
    let f = authorized_node(20);
    let (token, person) = operator_and_person(&f).await;
    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    let http = common::https_client(&f.path("n/tls/ca.pem"));
    let record = format!("{url}api/v1/person/{person}?purpose=medical");
    assert_eq!(http.get(&record).bearer_auth(&token).send().await.unwrap().status(), 200);

    // The disk refuses audit writes (a trigger stands in for a full or failing disk).
    let db = rusqlite::Connection::open(f.path("n/node.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER audit_fault BEFORE INSERT ON audit BEGIN SELECT RAISE(FAIL, 'injected: disk full'); END;",
    )
    .unwrap();
    for _ in 0..3 {
        let response = http.get(&record).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.headers().get("x-audit-seq").is_none());
        let page = response.text().await.unwrap();
        assert!(page.contains("監査ログ") && !page.contains("card"), "{page}");
        let names: Vec<String> = common::csv_rows(&f.path("persons.csv"))
            .iter()
            .map(|r| format!("{}{}", r["family_name"], r["given_name"]))
            .collect();
        assert!(names.iter().all(|n| !page.contains(n.as_str())));
    }

    // The disk recovers; so does the node.
    db.execute_batch("DROP TRIGGER audit_fault;").unwrap();
    assert_eq!(http.get(&record).bearer_auth(&token).send().await.unwrap().status(), 200);
    let (status, _) = server.terminate();
    assert!(status.success());
    let node = Node::open(&NodeDir::new(f.path("n"))).unwrap();
    assert!(node.verify_audit().unwrap().is_ok());
}
