"""Keys and cryptography: payload encryption, the gateway's signing keys and its signing interceptor,
the audit log's chain keys."""
