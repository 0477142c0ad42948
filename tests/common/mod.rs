//! Helpers shared by the integration tests: run the real binary, make a small central, region
//! and node in a temporary directory.

#![allow(dead_code)]

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
        ok(
            &[
                "central",
                "snapshot",
                "--dir",
                "central",
                "--input",
                "persons.csv",
                "--out",
                "region.kfsnap",
                "--synthetic",
                "--quiet",
            ],
            d,
        );
        Fixture { tmp }
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
