//! Regression tests for the holes an outside security test found, one per finding, each named
//! after what broke. Every test runs the real binary on real files and talks HTTPS to it on
//! loopback; where a second client must come from another address, it binds 127.0.0.x.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use chrono::{Duration, Utc};
use common::{Fixture, Spawned, csrf_of, csv_rows, fails, ok, run_env};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const PASSPHRASE: &str = "correct horse battery";

/// Node `n` for 石川県 with a snapshot of 輪島市 and 珠洲市, a first coordinator whose passphrase
/// is `PASSPHRASE`, and a drill authorization for `municipalities`. Returns the coordinator's id.
fn node(persons: u64, municipalities: &str) -> (Fixture, String) {
    let f = Fixture::new(persons);
    ok(
        &["central", "enroll-node", "--dir", "central", "--node-id", "n", "--region", "17", "--out", "n.bundle"],
        f.dir(),
    );
    let out = run_env(
        &["node", "init", "--dir", "n", "--bundle", "n.bundle", "--coordinator", "輪島 調整"],
        f.dir(),
        &[("KAIGO_FIELD_COORDINATOR_PASSPHRASE", PASSPHRASE)],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let coordinator = common::first_coordinator_id(&text);
    ok(&["snapshot", "import", "--dir", "n", "region.kfsnap", "--quiet"], f.dir());
    authorize(&f, municipalities, "a.kfauth");
    (f, coordinator)
}

/// A drill authorization of 30 days for `municipalities`, imported.
fn authorize(f: &Fixture, municipalities: &str, out: &str) {
    let mut args = Fixture::drill_args("n", municipalities, out);
    args.extend(["--days", "30"]);
    ok(&args, f.dir());
    ok(&["authz", "import", "--dir", "n", out], f.dir());
}

/// `staff add`: (id, one-time code, API token).
fn enrol(f: &Fixture, name: &str, facility: &str, role: &str) -> (String, String, String) {
    common::enrolled(&ok(
        &["staff", "add", "--dir", "n", "--name", name, "--facility", facility, "--role", role],
        f.dir(),
    ))
}

fn serve(f: &Fixture) -> (Spawned, String) {
    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    (server, url)
}

/// A browser-like client (cookies, no redirects) from `from`.
fn browser(f: &Fixture, from: Ipv4Addr) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(f.path("n/tls/ca.pem")).expect("CA certificate");
    Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"))
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(from))
        .build()
        .expect("client")
}

async fn get(c: &Client, url: &str) -> (StatusCode, String) {
    let r = c.get(url).send().await.expect("the node answers");
    (r.status(), r.text().await.expect("a body"))
}

async fn post(c: &Client, url: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
    let r = c.post(url).form(form).send().await.expect("the node answers");
    let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (r.status(), location + &r.text().await.expect("a body"))
}

/// Signs in through the form; the status and the redirect target (or the page).
async fn sign_in(c: &Client, url: &str, id: &str, secret: &str) -> (StatusCode, String) {
    let (_, page) = get(c, &format!("{url}login")).await;
    post(c, &format!("{url}login"), &[("csrf", &csrf_of(&page)), ("staff_id", id), ("secret", secret)]).await
}

/// First sign-in with the one-time code, then a PIN.
async fn sign_in_first_time(c: &Client, url: &str, id: &str, code: &str) {
    let (status, to) = sign_in(c, url, id, code).await;
    assert_eq!((status, to.starts_with("/pin")), (StatusCode::SEE_OTHER, true), "{to}");
    let (_, page) = get(c, &format!("{url}pin")).await;
    let (status, _) =
        post(c, &format!("{url}pin"), &[("csrf", &csrf_of(&page)), ("secret", "240815"), ("again", "240815")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

/// Every audit entry, as exported.
fn audit_entries(f: &Fixture) -> Vec<Value> {
    ok(&["audit", "export", "--dir", "n"], f.dir())
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

fn card(r: &std::collections::HashMap<String, String>) -> Value {
    json!({ "insurer_number": r["card_insurer_number"], "insured_number": r["insured_number"], "birth_date": r["birth_date"] })
}

const HERE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// Finding 1: an authorization for 輪島市 alone let a support worker search and open full
/// records of people in the other municipalities of the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_for_one_municipality_opens_no_one_of_the_others() {
    let (f, _) = node(300, "172049,172057");
    let (_, _, wide_token) = enrol(&f, "能登 花子", "1772090005", "support");
    let rows = csv_rows(&f.path("persons.csv"));
    let suzu = rows.iter().find(|r| r["municipality_code"] == "172057").expect("someone of 珠洲市");
    let wajima = rows.iter().find(|r| r["municipality_code"] == "172049").expect("someone of 輪島市");
    let wajima_count = rows.iter().filter(|r| r["municipality_code"] == "172049").count();

    // Under an authorization for both, both are found: their ids, for what follows.
    let (server, url) = serve(&f);
    let api = common::https_client(&f.path("n/tls/ca.pem"));
    let id_of = |body: Value| body["candidates"][0]["person_id"].as_str().expect("found").to_owned();
    let suzu_id = id_of(common::api_search(&api, &url, &wide_token, &card(suzu)).await);
    let wajima_id = id_of(common::api_search(&api, &url, &wide_token, &card(wajima)).await);
    assert!(server.terminate().0.success());

    // Now an authorization for 輪島市 alone.
    authorize(&f, "172049", "b.kfauth");
    let (id, code, token) = enrol(&f, "輪島 一郎", "1772090005", "support");
    let (server, url) = serve(&f);

    // The API: search, view and field events.
    let body = common::api_search(&api, &url, &token, &card(suzu)).await;
    assert_eq!(body["candidates"].as_array().map(Vec::len), Some(0), "{body}");
    let by_name =
        json!({ "name": format!("{} {}", suzu["family_name"], suzu["given_name"]), "birth_date": suzu["birth_date"] });
    let body = common::api_search(&api, &url, &token, &by_name).await;
    assert!(!body.to_string().contains(&suzu_id), "{body}");
    assert_eq!(id_of(common::api_search(&api, &url, &token, &card(wajima)).await), wajima_id);
    let person = |id: &str| format!("{url}api/v1/person/{id}?purpose=medical");
    let r = api.get(person(&suzu_id)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let text = r.text().await.unwrap();
    assert!(!text.contains(&suzu["family_name"]) && !text.contains(&suzu["address"]), "{text}");
    assert_eq!(api.get(person(&wajima_id)).bearer_auth(&token).send().await.unwrap().status(), StatusCode::OK);
    let events = format!("{url}api/v1/person/{suzu_id}/events");
    let r = api.post(&events).bearer_auth(&token).json(&json!({ "place": "shelter" })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The pages: search, the person page, whereabouts and the handover sheet.
    let c = browser(&f, HERE);
    sign_in_first_time(&c, &url, &id, &code).await;
    let (_, page) = get(&c, &format!("{url}search")).await;
    let csrf = csrf_of(&page);
    let (status, page) = post(
        &c,
        &format!("{url}search"),
        &[
            ("csrf", &csrf),
            ("insurer_number", &suzu["card_insurer_number"]),
            ("insured_number", &suzu["insured_number"]),
            ("card_birth_date", &suzu["birth_date"]),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains(&suzu_id) && !page.contains(&suzu["given_name"]), "{page}");
    let (_, ask) = get(&c, &format!("{url}person/{suzu_id}")).await;
    post(&c, &format!("{url}person/{suzu_id}/purpose"), &[("csrf", &csrf_of(&ask)), ("purpose", "medical")]).await;
    for path in [format!("person/{suzu_id}"), format!("person/{suzu_id}/handover")] {
        let (status, page) = get(&c, &format!("{url}{path}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.contains(&suzu["family_name"]) && !page.contains(&suzu["address"]), "{path}: {page}");
    }
    let (status, _) =
        post(&c, &format!("{url}person/{suzu_id}/events"), &[("csrf", &csrf), ("place", "shelter")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, ask) = get(&c, &format!("{url}person/{wajima_id}")).await;
    post(&c, &format!("{url}person/{wajima_id}/purpose"), &[("csrf", &csrf_of(&ask)), ("purpose", "medical")]).await;
    let (status, page) = get(&c, &format!("{url}person/{wajima_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&wajima["family_name"]));
    // Only the people of 輪島市 are even open.
    let (_, status_page) = get(&c, &url).await;
    assert!(status_page.contains(&format!("<dd>{wajima_count}人</dd>")), "{status_page}");
    assert!(server.terminate().0.success());
}

/// Finding 3: a crafted person link (`..%2F..%2Fmanage%2Fauthz%2Fclose%3F`) rendered a normal
/// purpose page whose form posted to `/manage/authz/close` with a valid CSRF token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_person_link_renders_no_form_that_posts_elsewhere() {
    let (f, coordinator) = node(100, "172049,172057");
    let (server, url) = serve(&f);
    let c = browser(&f, HERE);
    assert_eq!(sign_in(&c, &url, &coordinator, PASSPHRASE).await.0, StatusCode::SEE_OTHER);
    let (status, page) = get(&c, &format!("{url}person/..%2F..%2Fmanage%2Fauthz%2Fclose%3F")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!page.contains("manage/authz/close") && !page.contains(r#"action="/person/"#), "{page}");
    let (status, _) = post(&c, &format!("{url}person/..%2F..%2Fmanage%2Fauthz%2Fclose%3F/purpose"), &[]).await;
    assert!(status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN, "{status}");

    // A state-changing form with a field it does not know is refused before it acts.
    let (_, manage) = get(&c, &format!("{url}manage")).await;
    let csrf = csrf_of(&manage);
    let (status, _) = post(&c, &format!("{url}manage/authz/close"), &[("csrf", &csrf), ("then", "revoke")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) =
        post(&c, &format!("{url}manage/staff/..%2F..%2Fmanage%2Fauthz%2Fclose/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, home) = get(&c, &url).await;
    assert!(home.contains("有効：検索できます"), "the authorization is still in force");
    assert!(server.terminate().0.success());
}

/// Finding 3, generalised: any bytes in the id segment of every route with an id are answered
/// 400 or 404 and acted on nowhere.
#[test]
fn every_route_with_an_id_refuses_any_segment_it_cannot_parse() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (f, coordinator) = node(100, "172049,172057");
    let (_, _, token) = enrol(&f, "能登 花子", "1772090005", "support");
    let (server, url) = serve(&f);
    let c = browser(&f, HERE);
    let csrf = rt.block_on(async {
        assert_eq!(sign_in(&c, &url, &coordinator, PASSPHRASE).await.0, StatusCode::SEE_OTHER);
        csrf_of(&get(&c, &format!("{url}manage")).await.1)
    });
    let routes: [(&str, &str); 8] = [
        ("GET", "person/{}"),
        ("POST", "person/{}/purpose"),
        ("POST", "person/{}/events"),
        ("GET", "person/{}/handover"),
        ("POST", "manage/staff/{}/revoke"),
        ("GET", "api/v1/person/{}?purpose=medical"),
        ("GET", "api/v1/person/{}/events?purpose=medical"),
        ("POST", "api/v1/person/{}/events"),
    ];
    let config = ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let segments = prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..24),
        "(\\.\\./|%2F|\\?|#|\"|'|<|>|/|[a-z0-9]|\\PC){1,12}".prop_map(String::into_bytes),
    ];
    runner
        .run(&segments, |bytes| {
            // Every byte percent-encoded, dots too, so nothing is resolved before the router.
            let segment: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            rt.block_on(async {
                for (method, route) in routes {
                    let target = format!("{url}{}", route.replace("{}", &segment));
                    let request = match method {
                        "GET" => c.get(&target),
                        _ if route.starts_with("api/") => c.post(&target).json(&json!({ "place": "shelter" })),
                        _ => c.post(&target).form(&[
                            ("csrf", csrf.as_str()),
                            ("purpose", "medical"),
                            ("place", "shelter"),
                        ]),
                    };
                    let request = if route.starts_with("api/") { request.bearer_auth(&token) } else { request };
                    let r = request.send().await.expect("the node answers");
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    // 429 once an operator's refusals pass their allowance (`throttle`).
                    prop_assert!(
                        status == StatusCode::NOT_FOUND
                            || status == StatusCode::BAD_REQUEST
                            || status == StatusCode::TOO_MANY_REQUESTS,
                        "{method} {route} with {segment}: {status} {body}"
                    );
                    prop_assert!(!body.contains("action=\"/person/"), "{method} {route} with {segment}: {body}");
                }
                Ok(())
            })
        })
        .unwrap();
    let (_, home) = rt.block_on(get(&c, &url));
    assert!(home.contains("有効：検索できます"), "no request closed the authorization");
    assert!(server.terminate().0.success());
    assert!(ok(&["audit", "verify", "--dir", "n"], f.dir()).contains("正常"));
}

/// Found by the outside probe: an enrolled operator's refused requests were each a durable
/// entry, with no limit (1,647 a second with a valid token and malformed ids). Beyond an
/// allowance they are answered 429 and counted in a summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_refused_requests_do_not_grow_the_log_one_by_one() {
    let (f, _) = node(100, "172049,172057");
    let (id, _, token) = enrol(&f, "能登 花子", "1772090005", "support");
    let (server, url) = serve(&f);
    let api = common::https_client(&f.path("n/tls/ca.pem"));
    let mut limited = 0;
    for i in 0..200 {
        let r =
            api.get(format!("{url}api/v1/person/nothex{i}?purpose=medical")).bearer_auth(&token).send().await.unwrap();
        match r.status() {
            StatusCode::NOT_FOUND => {}
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!(limited, 200 - 60, "beyond 60 a minute, 429");
    assert!(server.terminate().0.success());
    let by_operator: Vec<Value> = audit_entries(&f).into_iter().filter(|e| e["operator"] == id.as_str()).collect();
    assert_eq!(by_operator.len(), 61, "60 entries and one summary");
    assert!(
        by_operator.iter().any(|e| e["detail"].as_str().unwrap().starts_with("140 further refused requests")),
        "{by_operator:?}"
    );
}

/// Finding 4: the lock was read before Argon2 and the failure counted after, so 40 parallel
/// wrong guesses were all checked (and five of them locked the account for everyone). Twelve
/// here: one address may hold no more connections than that and a few.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_guesses_are_not_all_checked_and_lock_out_only_the_guesser() {
    let (f, coordinator) = node(100, "172049,172057");
    let (server, url) = serve(&f);
    // Twelve at once from one address: within its connection cap (`CONNECTIONS_PER_ADDRESS_MAX`).
    let mut guessers = Vec::new();
    for _ in 0..12 {
        let c = browser(&f, HERE);
        let (_, page) = get(&c, &format!("{url}login")).await;
        guessers.push((c, csrf_of(&page)));
    }
    let login = format!("{url}login");
    let answers = join_all(
        guessers
            .iter()
            .map(|(c, csrf)| async {
                post(c, &login, &[("csrf", csrf), ("staff_id", &coordinator), ("secret", "wrong guess 1")]).await
            })
            .collect(),
    )
    .await;
    let checked = answers.iter().filter(|(_, page)| page.contains("違います")).count();
    let limit = 5 + 2; // LOGIN_FAILURES_MAX from this address, plus what was in flight.
    assert!((1..=limit).contains(&checked), "{checked} of 12 parallel guesses were checked");
    assert!(answers.iter().all(|(s, _)| s.is_client_error() || *s == StatusCode::SERVICE_UNAVAILABLE));

    // The failures were counted atomically: the store holds exactly as many as were checked.
    let db = rusqlite::Connection::open(f.path("n/node.db")).unwrap();
    let failures: u32 = db.query_row("SELECT failures FROM staff WHERE id = ?1", [&coordinator], |r| r.get(0)).unwrap();
    assert_eq!(failures as usize, checked);

    // A guesser going on from this address is soon locked out for this id, and told how many
    // tries were left; the coordinator on their own device is not locked out.
    let mut told_left = false;
    for _ in 0..5 {
        let (_, page) = sign_in(&browser(&f, HERE), &url, &coordinator, "wrong guess 2").await;
        told_left |= page.contains("あと") && page.contains("回間違えると");
        if page.contains("までログインできません") {
            break;
        }
    }
    assert!(told_left || checked >= 4, "the guesser was told how many tries were left");
    let (status, page) = sign_in(&browser(&f, HERE), &url, &coordinator, PASSPHRASE).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    assert!(page.contains("この端末からは") && page.contains("までログインできません"), "{page}");
    let (status, to) = sign_in(&browser(&f, Ipv4Addr::new(127, 0, 0, 2)), &url, &coordinator, PASSPHRASE).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
    assert!(server.terminate().0.success());
}

/// Finding 4: every sign-in, unknown ids included, ran a 19 MiB Argon2 with no bound; 64
/// parallel attempts took the server from 591 to 1,372 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_64_parallel_sign_ins() {
    let (f, _) = node(100, "172049,172057");
    let (server, url) = serve(&f);
    let mut attempts = Vec::new();
    for i in 0..64u8 {
        let c = browser(&f, Ipv4Addr::new(127, 0, 1, 10 + i));
        let (_, page) = get(&c, &format!("{url}login")).await;
        attempts.push((c, csrf_of(&page), format!("GUES-S{:03}", i)));
    }
    let before = peak_rss_kib(server.child.id());
    let login = format!("{url}login");
    let answers = join_all(
        attempts
            .iter()
            .map(|(c, csrf, id)| async {
                post(c, &login, &[("csrf", csrf), ("staff_id", id), ("secret", "wrong guess 1")]).await
            })
            .collect(),
    )
    .await;
    let after = peak_rss_kib(server.child.id());
    // Two Argon2 hashes of 19 MiB at most at once, and the rest of the work: under 64 MiB more.
    let grown_mib = (after.saturating_sub(before)) / 1024;
    eprintln!("peak resident memory {before} KiB before, {after} KiB after 64 parallel sign-ins");
    assert!(grown_mib < 64, "peak memory grew by {grown_mib} MiB under 64 parallel sign-ins");
    assert!(answers.iter().any(|(_, page)| page.contains("違います")), "some were checked");
    assert!(
        answers.iter().any(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE),
        "the rest were told to come back, not queued without bound"
    );
    assert!(server.terminate().0.success());
}

/// `VmHWM` of a process: the peak resident memory, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a running process");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
}

/// Runs futures concurrently on this task (every request is in flight before any answer is
/// awaited) and returns their outputs in order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *output = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

/// Finding 5: unauthenticated requests each wrote a durable "anonymous denied" entry: about 450
/// a second from one client, growing the log without limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_from_nobody_are_summarised_not_written_one_by_one() {
    let (f, _) = node(100, "172049,172057");
    let before = audit_entries(&f).len();
    let (server, url) = serve(&f);
    let api = common::https_client(&f.path("n/tls/ca.pem"));
    let mut limited = 0;
    for i in 0..300 {
        let r = api
            .post(format!("{url}api/v1/search"))
            .bearer_auth(format!("kft_bogus{i}"))
            .json(&json!({ "name": "のと はなこ" }))
            .send()
            .await
            .unwrap();
        match r.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("{other}"),
        }
    }
    assert!(limited > 0, "an address that knocks without end is slowed");
    let stranger = browser(&f, Ipv4Addr::new(127, 0, 0, 3));
    for _ in 0..50 {
        let r = stranger.get(format!("{url}search")).send().await.unwrap();
        assert_eq!(r.headers()["location"], "/login");
    }
    assert!(server.terminate().0.success());
    let entries = audit_entries(&f);
    let anonymous: Vec<&Value> = entries[before..].iter().filter(|e| e["operator"] == "anonymous").collect();
    assert!(anonymous.len() <= 4, "{} entries for 350 refusals: {anonymous:?}", anonymous.len());
    let counted: u64 = anonymous
        .iter()
        .filter_map(|e| e["detail"].as_str()?.split(": ").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, 350, "every refusal is counted in a summary: {anonymous:?}");
    assert!(anonymous.iter().any(|e| e["detail"].as_str().unwrap().starts_with("127.0.0.3: 50 ")), "{anonymous:?}");
    assert!(ok(&["audit", "verify", "--dir", "n"], f.dir()).contains("正常"));
}

/// Finding 6: `clock forward` had no upper bound; after a move to 9999-12-31 every fresh
/// authorization was refused as expired, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_cannot_be_moved_past_what_the_node_has_seen() {
    let (f, coordinator) = node(100, "172049,172057");
    let err = fails(&["clock", "forward", "--dir", "n", "--to", "9999-12-31T00:00:00Z"], f.dir());
    assert!(err.contains("進められません"), "{err}");
    let far = (Utc::now() + Duration::days(60)).to_rfc3339();
    assert!(fails(&["clock", "forward", "--dir", "n", "--to", &far], f.dir()).contains("進められません"));

    let (server, url) = serve(&f);
    let c = browser(&f, HERE);
    assert_eq!(sign_in(&c, &url, &coordinator, PASSPHRASE).await.0, StatusCode::SEE_OTHER);
    let (_, manage) = get(&c, &format!("{url}manage")).await;
    let csrf = csrf_of(&manage);
    let (status, page) = post(&c, &format!("{url}manage/clock"), &[("csrf", &csrf), ("to", "9999-12-31T00:00")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("進められません"), "{page}");
    // A sane move is asked about first, and only then made.
    let to = (Utc::now() + Duration::hours(9 + 2)).format("%Y-%m-%dT%H:%M").to_string();
    let (status, page) = post(&c, &format!("{url}manage/clock"), &[("csrf", &csrf), ("to", &to)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("時計を進めますか") && page.contains(r#"name="confirm" value="yes""#), "{page}");
    let (status, page) =
        post(&c, &format!("{url}manage/clock"), &[("csrf", &csrf), ("to", &to), ("confirm", "yes")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("時計を") && page.contains("に進めました"), "{page}");
    assert!(server.terminate().0.success());
    let moves: Vec<Value> = audit_entries(&f).into_iter().filter(|e| e["action"] == "clock_move").collect();
    assert_eq!(moves.iter().filter(|e| e["outcome"] == "ok").count(), 1, "{moves:?}");
    // The node is not bricked: a fresh authorization still comes in.
    authorize(&f, "172049", "b.kfauth");
}

/// Finding 8: purpose text kept control characters and `audit person` printed it raw; CR and
/// ESC sequences rewrote what the coordinator's terminal showed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_and_never_reach_a_terminal() {
    let (f, _) = node(100, "172049,172057");
    let (id, code, token) = enrol(&f, "能登 花子", "1772090005", "support");
    let rows = csv_rows(&f.path("persons.csv"));
    let (server, url) = serve(&f);
    let api = common::https_client(&f.path("n/tls/ca.pem"));
    let body = common::api_search(&api, &url, &token, &card(&rows[0])).await;
    let person = body["candidates"][0]["person_id"].as_str().expect("found").to_owned();
    // An era year too large for any calendar is a date that does not exist, not a crash (503).
    for birth in
        ["令和2147483647年1月1日", "R2147483647.1.1", "平成2147483640年1月1日", "R2147483000.1.1", "R4294967295.1.1"]
    {
        let r = api
            .post(format!("{url}api/v1/search"))
            .bearer_auth(&token)
            .json(&json!({ "name": "やまだ ひろし", "birth_date": birth }))
            .send()
            .await
            .unwrap();
        assert!(r.status() == StatusCode::BAD_REQUEST || r.status() == StatusCode::OK, "{birth}: {}", r.status());
    }
    // Every field of a search is bounded (issue 13): the matcher's work grows with what is typed.
    let long = "あ".repeat(kaigo_field::limits::SEARCH_FIELD_CHARS_MAX + 1);
    let r = api
        .post(format!("{url}api/v1/search"))
        .bearer_auth(&token)
        .json(&json!({ "name": long, "birth_date": "昭和10年1月1日" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("長すぎます"));
    let forged = "\r\u{1b}[2K安否確認\u{1b}[8m";
    let r = api
        .get(format!("{url}api/v1/person/{person}"))
        .query(&[("purpose", "other"), ("purpose_text", forged)])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("制御文字"));
    let r = api
        .post(format!("{url}api/v1/person/{person}/events"))
        .bearer_auth(&token)
        .json(&json!({ "place": "other", "place_name": "体育館\u{1b}[2J", "note": "透析" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let c = browser(&f, HERE);
    sign_in_first_time(&c, &url, &id, &code).await;
    let (_, ask) = get(&c, &format!("{url}person/{person}")).await;
    let (status, page) = post(
        &c,
        &format!("{url}person/{person}/purpose"),
        &[("csrf", &csrf_of(&ask)), ("purpose", "other"), ("purpose_text", forged)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("制御文字"), "{page}");
    assert!(server.terminate().0.success());

    let shown = ok(&["audit", "person", "--dir", "n", &person], f.dir());
    assert!(!shown.chars().any(|c| c.is_control() && c != '\n'), "{shown:?}");
    let err = fails(
        &["staff", "add", "--dir", "n", "--name", "偽\u{1b}[2J", "--facility", "1772090005", "--role", "support"],
        f.dir(),
    );
    assert!(err.contains("制御文字"), "{err}");
    let mut args = Fixture::drill_args("n", "172049", "x.kfauth");
    let disaster = args.iter().position(|a| *a == "--disaster").unwrap() + 1;
    args[disaster] = "訓練\u{1b}]0;偽\u{7}";
    assert!(fails(&args, f.dir()).contains("制御文字"), "the central refuses such a disaster name too");
}

/// Finding 9: an enrolled coordinator could revoke the first coordinator (and there is no
/// un-revoke).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_coordinator_cannot_revoke_the_first() {
    let (f, first) = node(100, "172049,172057");
    let (second, code, _) = enrol(&f, "珠洲 調整", "", "coordinator");
    let (server, url) = serve(&f);
    let c = browser(&f, HERE);
    sign_in_first_time(&c, &url, &second, &code).await;
    let (_, manage) = get(&c, &format!("{url}manage")).await;
    assert!(!manage.contains(&format!("/manage/staff/{first}/revoke")), "no button to revoke the first coordinator");
    let (status, page) = post(&c, &format!("{url}manage/staff/{first}/revoke"), &[("csrf", &csrf_of(&manage))]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("最初のコーディネーターは取り消せません"), "{page}");
    let (status, _) = sign_in(&browser(&f, Ipv4Addr::new(127, 0, 0, 2)), &url, &first, PASSPHRASE).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the first coordinator still signs in");
    assert!(server.terminate().0.success());
}

/// Found by the outside probe after the sign-in fix: guesses from ever-new addresses renewed the
/// account's rest (one a minute sufficed) and the holder's correct passphrase was refused every
/// time. A device the holder signed in from is not held out by that rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_from_elsewhere_do_not_hold_the_holder_out_of_their_own_phone() {
    let (f, coordinator) = node(100, "172049,172057");
    let (server, url) = serve(&f);
    let phone = Ipv4Addr::new(127, 0, 0, 77);
    assert_eq!(sign_in(&browser(&f, phone), &url, &coordinator, PASSPHRASE).await.0, StatusCode::SEE_OTHER);
    // The account as guesses from many addresses leave it: failing, and resting for a minute.
    let db = rusqlite::Connection::open(f.path("n/node.db")).unwrap();
    db.execute(
        "UPDATE staff SET failures = 40, locked_until = ?2 WHERE id = ?1",
        rusqlite::params![coordinator, Utc::now() + Duration::seconds(60)],
    )
    .unwrap();
    let (status, page) = sign_in(&browser(&f, Ipv4Addr::new(127, 0, 6, 1)), &url, &coordinator, PASSPHRASE).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a new address waits out the rest: {page}");
    let (status, to) = sign_in(&browser(&f, phone), &url, &coordinator, PASSPHRASE).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the holder's own phone gets in: {to}");
    assert!(server.terminate().0.success());
}

/// Finding (probe F): `serve` printed its address before it listened for SIGTERM, and a closed
/// standard output (whoever started it went away) broke it: it must serve on, and stop cleanly on
/// SIGTERM, with its stop in the audit log.
#[test]
fn serve_goes_on_without_its_output_and_stops_cleanly_on_sigterm() {
    use std::process::{Command, Stdio};
    let f = Fixture::new(20);
    f.authorized_node();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut child = Command::new(common::BIN)
        .args(["serve", "--dir", "n", "--listen", &addr.to_string()])
        .current_dir(f.dir())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Nobody reads what it prints.
    drop(child.stdout.take());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "serve died with its output closed");
        assert!(std::time::Instant::now() < deadline, "serve never listened");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "serve ignored SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let node = kaigo_field::node::Node::open(&kaigo_field::node::NodeDir::new(f.path("n"))).unwrap();
    let last = node.store.audit_page(None, 1).unwrap();
    assert_eq!(last[0].action, "node_stop", "{last:?}");
}

/// Finding (issue 13): the public status page, loaded with a stale session cookie, counted a
/// refused request each time (a summary entry in the log, and 429 for that address's other
/// requests beyond the limit) and never cleared the cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_with_a_stale_cookie_costs_nothing_and_clears_it() {
    let f = Fixture::new(20);
    f.authorized_node();
    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    let http = common::https_client(&f.path("n/tls/ca.pem"));
    let stale = format!("{}=0123456789abcdef", kaigo_field::web::SESSION_COOKIE);
    for _ in 0..(kaigo_field::limits::ANONYMOUS_REFUSALS_PER_ADDRESS_MAX + 10) {
        let r = http.get(&url).header("cookie", &stale).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let cleared = r.headers().get_all("set-cookie").iter().any(|c| {
            let c = c.to_str().unwrap();
            c.starts_with(&format!("{}=", kaigo_field::web::SESSION_COOKIE)) && c.contains("Max-Age=0")
        });
        assert!(cleared, "the stale cookie is cleared: {:?}", r.headers());
    }
    // The same address is not held back elsewhere by them.
    let login = http.get(format!("{url}login")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let counted_before_stop = {
        let (status, _) = server.terminate();
        assert!(status.success());
        let node = kaigo_field::node::Node::open(&kaigo_field::node::NodeDir::new(f.path("n"))).unwrap();
        node.store.audit_entries(1).unwrap().into_iter().filter(|e| e.operator == "anonymous").count()
    };
    assert_eq!(counted_before_stop, 0, "the status page was counted as refused");

    // A page that needs a session sends the stale cookie's holder to sign in, and clears it too.
    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    let http = common::https_session(&f.path("n/tls/ca.pem"));
    let r = http.get(format!("{url}search")).header("cookie", &stale).send().await.unwrap();
    assert_eq!(r.headers()["location"], "/login");
    let cleared = r.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().contains("Max-Age=0"));
    assert!(cleared, "{:?}", r.headers());
    let (status, _) = server.terminate();
    assert!(status.success());
    let node = kaigo_field::node::Node::open(&kaigo_field::node::NodeDir::new(f.path("n"))).unwrap();
    let counted: Vec<String> = node
        .store
        .audit_entries(1)
        .unwrap()
        .into_iter()
        .filter(|e| e.operator == "anonymous")
        .map(|e| e.detail)
        .collect();
    assert_eq!(counted.len(), 1, "only the search page's refusal is counted: {counted:?}");
    assert!(counted[0].contains(": 1 requests"), "{counted:?}");
}

/// Finding (issue 13): internal error text (file paths, `{:?}` of errors, SQL and snapshot
/// errors) reached the messages staff see. A fault of the node answers what failed, in staff's
/// words, with an incident number; the detail is in the log under that number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_of_the_node_shows_staff_an_incident_number_not_its_insides() {
    let (f, _) = node(60, "172049,172057");
    let (_, _, token) = enrol(&f, "能登 花子", "1772090005", "support");
    let rows = csv_rows(&f.path("persons.csv"));
    let mut server =
        Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[("RUST_LOG", "error")]);
    let url = server.url();
    let api = common::https_client(&f.path("n/tls/ca.pem"));
    let first = common::api_search(&api, &url, &token, &card(&rows[0])).await;
    let person = first["candidates"][0]["person_id"].as_str().expect("found").to_owned();
    // The snapshot file is cut short under the serving node (a dying SD card).
    let snapshots = f.path("n/snapshots");
    let file = std::fs::read_dir(&snapshots).unwrap().next().unwrap().unwrap().path();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(1000).unwrap();
    let r = api.get(format!("{url}api/v1/person/{person}?purpose=medical")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    let body = body["error"].as_str().unwrap().to_owned();
    assert!(body.contains("記録を読めません") && body.contains("障害番号"), "{body}");
    for inside in ["snapshots", ".kfsnap", "os error", "Io", "{", "スナップショット"] {
        assert!(!body.contains(inside), "{inside:?} reached staff: {body}");
    }
    let incident = body.split("障害番号 ").nth(1).unwrap().chars().take(8).collect::<String>();
    let (_, output) = server.terminate();
    assert!(output.contains(&incident), "the log has the incident's detail: {output}");
}
