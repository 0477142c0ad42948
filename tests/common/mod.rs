//! Helpers shared by the integration tests: run the real binary, make a small central, region
//! and node in a temporary directory.

#![allow(dead_code)]

pub mod browser;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_kaigo-field");

/// Runs the binary and returns its output, whatever the exit status.
pub fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN).args(args).current_dir(cwd).env("RUST_LOG", "warn").output().expect("the binary runs")
}

/// Runs the binary and panics with its stderr unless it succeeds.
pub fn ok(args: &[&str], cwd: &Path) -> String {
    let out = run(args, cwd);
    assert!(
        out.status.success(),
        "kaigo-field {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Runs the binary, expects it to fail, and returns its stderr.
pub fn fails(args: &[&str], cwd: &Path) -> String {
    let out = run(args, cwd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "kaigo-field {args:?} should have failed; stderr: {stderr}");
    stderr
}

/// A central with keys, a synthetic population CSV and one snapshot of it.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
}

impl Fixture {
    /// `persons` synthetic people of 輪島市 and 珠洲市, and snapshot v1 at `region.kfsnap`.
    pub fn new(persons: u64) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        ok(&["central", "init", "--dir", "central"], d);
        ok(
            &[
                "central",
                "synth",
                "--municipalities",
                "172049,172057",
                "--persons",
                &persons.to_string(),
                "--seed",
                "11",
                "--out",
                "persons.csv",
                "--quiet",
            ],
            d,
        );
        let f = Fixture { tmp };
        f.snapshot("region.kfsnap");
        f
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// A node named `name` for `region`, enrolled at this central and provisioned from its bundle.
    pub fn node(&self, name: &str, region: &str) {
        let bundle = format!("{name}.bundle");
        ok(
            &["central", "enroll-node", "--dir", "central", "--node-id", name, "--region", region, "--out", &bundle],
            self.dir(),
        );
        ok(&["node", "init", "--dir", name, "--bundle", &bundle], self.dir());
    }

    /// The arguments of a drill authorization for `node` over `municipalities`, written to `out`.
    pub fn drill_args<'a>(node: &'a str, municipalities: &'a str, out: &'a str) -> Vec<&'a str> {
        let mut args: Vec<&str> = "central authorize --dir central --disaster 訓練 --drill".split(' ').collect();
        args.extend(["--municipalities", municipalities, "--nodes", node, "--out", out]);
        args
    }

    /// Node `n` for 石川県 holding this snapshot under an active drill authorization.
    pub fn authorized_node(&self) {
        self.node("n", "17");
        ok(&["snapshot", "import", "--dir", "n", "region.kfsnap", "--quiet"], self.dir());
        let mut args = Self::drill_args("n", "172049,172057", "a.kfauth");
        args.extend(["--days", "30"]);
        ok(&args, self.dir());
        ok(&["authz", "import", "--dir", "n", "a.kfauth"], self.dir());
    }

    /// Another snapshot of the same CSV: the next version.
    pub fn snapshot(&self, out: &str) {
        ok(
            &[
                "central",
                "snapshot",
                "--dir",
                "central",
                "--input",
                "persons.csv",
                "--out",
                out,
                "--synthetic",
                "--quiet",
            ],
            self.dir(),
        );
    }
}

/// The rows of a person CSV as (column → value) maps.
pub fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).expect("csv");
    let headers = r.headers().expect("header").clone();
    r.records()
        .map(|rec| {
            let rec = rec.expect("row");
            headers.iter().zip(rec.iter()).map(|(h, v)| (h.to_owned(), v.to_owned())).collect()
        })
        .collect()
}

/// Runs the binary with extra environment variables; returns its output whatever the status.
pub fn run_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(cwd).env("RUST_LOG", "warn").env_remove("KAIGO_FIELD_PASSPHRASE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the binary runs")
}

/// Every byte of every file under `dir`.
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut hay = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).expect("readable dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                hay.extend(std::fs::read(&path).expect("readable file"));
            }
        }
    }
    hay
}

pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A long-running kaigo-field process (serve, demo) whose standard output is read line by line.
pub struct Spawned {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Spawned {
    pub fn start(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Spawned {
        use std::io::BufRead;
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("the binary starts");
        let (tx, lines) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Spawned { child, lines, seen: Vec::new() }
    }

    /// The first line containing `needle`, within a minute.
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(std::time::Duration::from_secs(60)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("never printed {needle:?}: {e}; saw {:?}", self.seen),
            }
        }
    }

    /// The URL printed at start.
    pub fn url(&mut self) -> String {
        self.wait_for("URL: ").trim_start_matches("URL: ").to_owned()
    }

    /// SIGTERM, then waits for a clean exit; returns the status and all output.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
        self.wait_for("停止しました");
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return (status, self.seen.join("\n"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("did not exit after SIGTERM");
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// An HTTPS client that trusts exactly the central CA in `ca_pem`.
pub fn https_client(ca_pem: &Path) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(ca_pem).expect("CA certificate");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"))
        .build()
        .expect("client")
}

/// An HTTPS client for the web pages: keeps cookies like a browser, and does not follow
/// redirects, so a test sees where a page sends it.
pub fn https_session(ca_pem: &Path) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(ca_pem).expect("CA certificate");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"))
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The CSRF token of the first form on a page.
pub fn csrf_of(html: &str) -> String {
    let start = html.find(r#"name="csrf" value=""#).expect("a form with a CSRF token") + r#"name="csrf" value=""#.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The demo's logins (`demo-logins.txt`): staff id and secret, in order coordinator, support,
/// receiving.
pub fn demo_logins(demo_dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(demo_dir.join("demo-logins.txt"))
        .expect("demo logins")
        .lines()
        .map(|l| {
            let id = l.split_whitespace().next().unwrap().to_owned();
            let secret = l.rsplit(": ").next().unwrap().trim().to_owned();
            (id, secret)
        })
        .collect()
}

/// `POST /api/v1/search` with an operator's token; the answer as JSON (any status).
pub async fn api_search(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    query: &serde_json::Value,
) -> serde_json::Value {
    let response = http.post(format!("{url}api/v1/search")).bearer_auth(token.trim()).json(query).send().await;
    response.expect("the node answers").json().await.expect("a JSON answer")
}

/// The first coordinator's staff id, as `node init` prints it.
pub fn first_coordinator_id(init_output: &str) -> String {
    init_output
        .split("最初のコーディネーター: 職員ID ")
        .nth(1)
        .and_then(|rest| rest.split('（').next())
        .expect("the first coordinator's id printed")
        .to_owned()
}

/// What `staff add` printed: (staff id, one-time login code, API token).
pub fn enrolled(staff_add_output: &str) -> (String, String, String) {
    let out = staff_add_output;
    let id = out.split("職員 ").nth(1).and_then(|r| r.split(' ').next()).expect("a staff id printed").to_owned();
    let code = out
        .split("ログインコード（1回限り）: ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .expect("a code printed")
        .to_owned();
    let token = out.lines().find(|l| l.starts_with("kft_")).expect("a token printed").trim().to_owned();
    (id, code, token)
}

/// Copies a directory tree (a node or central directory, to run a test on a copy).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
