"""The embedded stack `countersign up` launches: Temporal's dev server, the worker,
the gateway, a mail sink."""
