"""The MCP server is tested against the real gateway: the `api` fixture of tests/api/conftest.py."""

from tests.api.conftest import api

__all__ = ["api"]
