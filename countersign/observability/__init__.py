"""Metrics, structured logs, tracing, and the worker's stall watchdog."""
