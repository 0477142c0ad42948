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

const KILLS: usize = 200;
const REQUESTS_PER_CLIENT_MAX: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_whose_responses_were_received_survive_sigkill_at_random_moments() {
    let f = authorized_node(20);
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
                let (http, url, received) = (http.clone(), url.clone(), received.clone());
                tokio::spawn(async move {
                    // A bounded number per round: the node verifies its whole log at every
                    // start, so an unbounded flood would make later rounds slow, not harder.
                    for _ in 0..REQUESTS_PER_CLIENT_MAX {
                        let Ok(response) = http.get(format!("{url}search")).send().await else { return };
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
    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    let http = common::https_client(&f.path("n/tls/ca.pem"));
    let search = format!("{url}search");
    assert_eq!(http.get(&search).send().await.unwrap().status(), 200);

    // The disk refuses audit writes (a trigger stands in for a full or failing disk).
    let db = rusqlite::Connection::open(f.path("n/node.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER audit_fault BEFORE INSERT ON audit BEGIN SELECT RAISE(FAIL, 'injected: disk full'); END;",
    )
    .unwrap();
    for _ in 0..3 {
        let response = http.get(&search).send().await.unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.headers().get("x-audit-seq").is_none());
        let page = response.text().await.unwrap();
        assert!(page.contains("監査ログ") && !page.contains("災害認可（"), "{page}");
        let names: Vec<String> = common::csv_rows(&f.path("persons.csv"))
            .iter()
            .map(|r| format!("{}{}", r["family_name"], r["given_name"]))
            .collect();
        assert!(names.iter().all(|n| !page.contains(n.as_str())));
    }

    // The disk recovers; so does the node.
    db.execute_batch("DROP TRIGGER audit_fault;").unwrap();
    assert_eq!(http.get(&search).send().await.unwrap().status(), 200);
    let (status, _) = server.terminate();
    assert!(status.success());
    let node = Node::open(&NodeDir::new(f.path("n"))).unwrap();
    assert!(node.verify_audit().unwrap().is_ok());
}
