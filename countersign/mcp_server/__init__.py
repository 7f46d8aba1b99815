"""Countersign's MCP server: agents ask a human for approval through MCP tools.

It sits beside the gateway rather than inside it, one floor below `api/`: its tools talk to the gateway's
HTTP API only (`gateway.py`), with the caller's own credential, so every authentication, role and tenant
rule of the gateway applies to them unchanged, and nothing here imports the gateway. Two transports
serve the same tools (`server.py`): stdio, `countersign mcp` over the network (`stdio.py`); and
Streamable HTTP at the gateway's `/mcp`, which the gateway mounts (`countersign/api/mcp_endpoint.py`),
calling itself in-process. Named `mcp_server`, not `mcp`: that name is the SDK's.
"""
