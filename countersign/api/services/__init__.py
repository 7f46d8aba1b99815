"""The gateway's services: what a route asks, answered from Temporal and the stores (no HTTP here)."""
