"""The SQL layer: one way to open a database, and every store on it (audit log, execution ledger,
principals, graphs)."""
