//! The web app under load, end to end: the real `kaigo-field demo` process over HTTPS on
//! loopback, a synthetic region of 1,000,000 persons (KF_BENCH_PERSONS to change), staff signed in
//! through the sign-in form with cookies, as a browser would be.
//!
//! `cargo bench --bench web`. Measures, per page: the search results page (matcher plus its
//! durable audit entry), the person page (one snapshot chunk read and decrypted, the role's
//! sections, the field events, the audit entry), the handover sheet and recording whereabouts;
//! sequentially and with several staff at once. Searches are limited per operator (30 a minute),
//! so the bench searches with several operators and spends its load on opening records.
//! Prints its figures; asserts nothing about time, because a benchmark is not a test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Client;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "  {what:<34} n={:<5} p50 {:>9.2?}  p95 {:>9.2?}  p99 {:>9.2?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.95),
        percentile(&samples, 0.99)
    );
}

fn csrf_of(html: &str) -> String {
    let key = r#"name="csrf" value=""#;
    let start = html.find(key).expect("a form with a CSRF token") + key.len();
    html[start..].split('"').next().expect("a token").to_owned()
}

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

async fn signed_in(ca: &[u8], url: &str, id: &str, secret: &str) -> Client {
    let client = Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca).expect("PEM"))
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = client.get(format!("{url}login")).send().await.expect("login page").text().await.expect("text");
    let r = client
        .post(format!("{url}login"))
        .form(&[("csrf", csrf_of(&page).as_str()), ("staff_id", id), ("secret", secret)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(r.status(), 303, "signed in");
    client
}

async fn timed<F: std::future::Future<Output = reqwest::Response>>(f: F) -> (Duration, String) {
    let started = Instant::now();
    let r = f.await;
    // A search the form refuses (a date it cannot read) is still a page the node answered.
    assert!(!r.status().is_server_error() && r.status() != 401 && r.status() != 429, "status {}", r.status());
    let body = r.text().await.expect("body");
    (started.elapsed(), body)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let persons: u64 = std::env::var("KF_BENCH_PERSONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("demo");
    let _ = rustls::crypto::ring::default_provider().install_default();

    println!("web benchmark, {persons} persons (building the demo region first)");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaigo-field"))
        .args(["demo", "--dir", dir.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"])
        .args(["--persons", &persons.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let demo = Demo(child);
    let mut url = String::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if let Some(u) = line.strip_prefix("URL: ") {
            url = u.trim().to_owned();
            break;
        }
    }
    // Keep reading what the demo prints: a closed pipe would end it at its next line.
    std::thread::spawn(move || lines.for_each(drop));
    println!("  demo built and serving              {:>8.1} s", started.elapsed().as_secs_f64());
    let ca = std::fs::read(dir.join("node/tls/ca.pem")).expect("CA");
    let logins: Vec<(String, String)> = std::fs::read_to_string(dir.join("demo-logins.txt"))
        .expect("logins")
        .lines()
        .map(|l| {
            (l.split_whitespace().next().expect("id").to_owned(), l.rsplit(": ").next().expect("secret").to_owned())
        })
        .collect();
    let queries: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("queries.jsonl"))
        .expect("queries")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a query"))
        .filter(|q: &serde_json::Value| q["expected"].is_object() && q["route"] == "four_info")
        .collect();

    // Two operators (support, receiving) share the searches to stay under the per-operator limit.
    let operators = [
        signed_in(&ca, &url, &logins[1].0, &logins[1].1).await,
        signed_in(&ca, &url, &logins[2].0, &logins[2].1).await,
    ];
    let mut search_times = Vec::new();
    let mut links = Vec::new();
    for (i, q) in queries.iter().take(50).enumerate() {
        let c = &operators[i % 2];
        let form = c.get(format!("{url}search")).send().await.expect("search page").text().await.expect("text");
        let field = |k: &str| q[k].as_str().unwrap_or("").to_owned();
        let (elapsed, body) = timed(
            c.post(format!("{url}search"))
                .form(&[
                    ("csrf", csrf_of(&form)),
                    ("name", field("name")),
                    ("birth_date", field("birth_date")),
                    ("sex", field("sex")),
                    ("place", field("insurer_or_address")),
                ])
                .send()
                .map(|r| r.expect("search")),
        )
        .await;
        if i == 0 {
            println!("  first search (opens the region)     {:>8.2?}", elapsed);
        } else {
            search_times.push(elapsed);
        }
        if let Some(start) = body.find("href=\"/person/") {
            links.push((i % 2, body[start + 6..].split('"').next().expect("link").to_owned()));
        }
    }
    report("search results page", search_times);

    // State the purpose once per person and operator, then open records repeatedly.
    for (op, link) in &links {
        let c = &operators[*op];
        let ask = c.get(format!("{url}{}", &link[1..])).send().await.expect("ask").text().await.expect("text");
        let r = c
            .post(format!("{url}{}/purpose", &link[1..]))
            .form(&[("csrf", csrf_of(&ask).as_str()), ("purpose", "life_support")])
            .send()
            .await
            .expect("purpose");
        assert_eq!(r.status(), 303);
    }
    let mut person_times = Vec::new();
    let mut sheet_times = Vec::new();
    let mut event_times = Vec::new();
    for round in 0..10 {
        for (op, link) in &links {
            let c = &operators[*op];
            let (t, page) = timed(c.get(format!("{url}{}", &link[1..])).send().map(|r| r.expect("person"))).await;
            person_times.push(t);
            if round == 0 {
                let (t, _) =
                    timed(c.get(format!("{url}{}/handover", &link[1..])).send().map(|r| r.expect("sheet"))).await;
                sheet_times.push(t);
                let (t, _) = timed(
                    c.post(format!("{url}{}/events", &link[1..]))
                        .form(&[("csrf", csrf_of(&page).as_str()), ("place", "shelter"), ("note", "ベンチマーク")])
                        .send()
                        .map(|r| r.expect("event")),
                )
                .await;
                event_times.push(t);
            }
        }
    }
    report("person page, one at a time", person_times);
    report("handover sheet", sheet_times);
    report("record whereabouts (POST)", event_times);

    // Eight staff at once, each opening records as fast as the node answers.
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let c = operators[t % 2].clone();
            let mine: Vec<String> = links.iter().filter(|(op, _)| *op == t % 2).map(|(_, l)| l.clone()).collect();
            let url = url.clone();
            tokio::spawn(async move {
                let mut times = Vec::new();
                for i in 0..40 {
                    let link = &mine[i % mine.len()];
                    let (t, _) = timed(c.get(format!("{url}{}", &link[1..])).send().map(|r| r.expect("person"))).await;
                    times.push(t);
                }
                times
            })
        })
        .collect();
    let mut concurrent = Vec::new();
    for t in tasks {
        concurrent.extend(t.await.expect("a task"));
    }
    let rate = concurrent.len() as f64 / started.elapsed().as_secs_f64();
    report(&format!("person page, 8 at once ({rate:.0}/s)"), concurrent);
    drop(demo);
}

trait MapFuture: std::future::Future + Sized {
    fn map<T>(self, f: impl FnOnce(Self::Output) -> T) -> impl std::future::Future<Output = T> {
        async move { f(self.await) }
    }
}

impl<F: std::future::Future> MapFuture for F {}
