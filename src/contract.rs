//! The contracts between the central and its nodes: what one writes and the other reads. Both
//! sides import this module and neither imports the other for it, so the central does not depend
//! on the node's code (and the sync protocol's types will live here too).

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// What `central enroll-node` hands a node: its identity, keys and the central's public keys.
/// The file is secret (mode 0600); it is read once by `node init` and can then be destroyed.
#[derive(Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub node_id: String,
    pub region: String,
    pub central_public_key: String,
    pub ca_cert_pem: String,
    pub tls_cert_pem: String,
    pub tls_key_pem: String,
    pub node_secret_key: String,
    /// The node's public keys, and the central's signature over them: lets `audit verify` on
    /// the node trust the key its checkpoints verify with.
    pub node_public_key: String,
    pub node_public_key_signature: String,
    /// The audit log's seal key of epoch 0 (`AuditSealKey` file text); the central keeps a
    /// copy, the node evolves it away.
    pub audit_seal_key: String,
}

/// What the central signs to vouch for a node's public keys.
pub fn node_key_message(node_id: &str, public_text: &str) -> Vec<u8> {
    [b"kaigo-field/node-keys/v1\0".as_slice(), node_id.as_bytes(), b"\0", public_text.as_bytes()].concat()
}

/// v2: carries the audit seal key. A v1 bundle is refused: its node could not seal its log.
pub const BUNDLE_FORMAT: &str = "kaigo-field node bundle v2";

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bundle({}, region {})", self.node_id, self.region)
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        self.tls_key_pem.zeroize();
        self.node_secret_key.zeroize();
        self.audit_seal_key.zeroize();
    }
}
