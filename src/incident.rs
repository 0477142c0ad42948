//! Incident numbers: a fault of the node itself (its disk, its files, a task that died) is told
//! to staff as what failed and a number to give the coordinator; the detail (paths, error text)
//! goes only to the log, under that number. Internal error text never reaches a page, an answer
//! or the public status page.

/// Logs `detail` under a new incident number and returns the number (8 hexadecimal digits).
pub fn record(what: &str, detail: impl std::fmt::Display) -> String {
    let incident = format!("{:08X}", rand::random::<u32>());
    tracing::error!(%incident, %detail, what, "fault inside the node");
    incident
}
