//! Finding 9.2: nothing in a node's or the central's directory is readable by anyone but the
//! owner, whatever the umask: files 0600, directories 0700. The real binary, on real files.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Fixture, Spawned};

/// Every file and directory under `root` (itself included) with any group or other permission
/// bit, with its mode; and how many files were looked at.
fn open_to_others(root: &Path) -> (Vec<String>, usize) {
    let mut found = Vec::new();
    let mut files = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).expect("readable entry");
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            found.push(format!("{} {mode:o}", path.display()));
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path).expect("readable dir") {
                stack.push(entry.expect("entry").path());
            }
        } else {
            files += 1;
        }
    }
    (found, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_file_in_the_node_or_central_directory_is_readable_by_others() {
    let f = Fixture::new(60);
    // init, snapshot import and authorization import, as a shelter does.
    f.authorized_node();
    // serve makes the SQLite WAL and shared-memory files and holds them while it runs.
    let mut server = Spawned::start(&["serve", "--dir", "n", "--listen", "127.0.0.1:0"], f.dir(), &[]);
    let url = server.url();
    // A page served: the server is up, its signal handler too, and it has used its database.
    let http = common::https_client(&f.path("n/tls/ca.pem"));
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    let node = f.path("n");
    let (running, _) = open_to_others(&node);
    assert!(
        node.join("node.db-wal").exists() && node.join("node.db-shm").exists(),
        "the WAL files exist while serving"
    );
    let (status, _) = server.terminate();
    assert!(status.success());

    let (after, files) = open_to_others(&node);
    assert!(files >= 8, "node.db, keys, TLS files and the snapshot were looked at ({files})");
    assert!(running.is_empty(), "readable by others while serving: {running:?}");
    assert!(after.is_empty(), "readable by others: {after:?}");

    let (central, files) = open_to_others(&f.path("central"));
    assert!(files >= 6, "keys, CA and the snapshot's key and manifest were looked at ({files})");
    assert!(central.is_empty(), "readable by others in the central: {central:?}");
}

/// A node directory made by hand beforehand (0755, as `mkdir` leaves it) is closed by `node init`.
#[test]
fn node_init_closes_a_directory_made_beforehand() {
    let f = Fixture::new(10);
    let node = f.path("m");
    fs::create_dir(&node).unwrap();
    fs::set_permissions(&node, fs::Permissions::from_mode(0o755)).unwrap();
    f.node("m", "17");
    let (open, _) = open_to_others(&node);
    assert!(open.is_empty(), "readable by others: {open:?}");
}

/// Finding (probe G): the person CSV that `central synth` writes and the authorization code that
/// `central authorize` writes (each node's wrapped data key) were left 0644.
#[test]
fn the_centrals_outputs_with_people_or_keys_are_its_owners_only() {
    let f = Fixture::new(20);
    f.node("n", "17");
    let mut args = Fixture::drill_args("n", "172049,172057", "a.kfauth");
    args.extend(["--qr", "a.svg"]);
    common::ok(&args, f.dir());
    common::ok(
        &[
            "central",
            "synth",
            "--municipalities",
            "172049",
            "--persons",
            "5",
            "--out",
            "more.csv",
            "--queries",
            "q.jsonl",
            "--quiet",
        ],
        f.dir(),
    );
    for name in ["persons.csv", "more.csv", "q.jsonl", "a.kfauth", "a.svg"] {
        let mode = fs::metadata(f.path(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
    }
}
