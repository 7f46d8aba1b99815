"""Connecting to Temporal: one data converter everywhere, and the search attributes Countersign needs."""

import logging
import re
from collections.abc import Sequence
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, Interceptor, Plugin, WorkflowExecution
from temporalio.converter import PayloadCodec
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from countersign.models import search_attributes as sa
from countersign.models.errors import CountersignError
from countersign.security.codec import data_converter

log = logging.getLogger(__name__)

_INDEXED_TYPE = {
    "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "DOUBLE": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    "DATETIME": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "KEYWORD_LIST": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}


class TemporalUnreachable(CountersignError, ConnectionError):
    """No Temporal frontend answered at the address (refused, unknown host, TLS handshake failed)."""


async def connect(
    address: str,
    namespace: str = "default",
    codec: PayloadCodec | None = None,
    *,
    runtime: Runtime | None = None,
    plugins: Sequence[Plugin] = (),
    interceptors: Sequence[Interceptor] = (),
    tls: TLSConfig | None = None,
) -> Client:
    """A client whose payloads are encrypted by `codec` (Settings.payload_codec()) when there is one.

    `runtime`: one with telemetry (observability/metrics.py), else the default; `plugins`: tracing and
    logging interceptors (observability/tracing.py, observability/logs.py), also applied to every worker
    built from this client; `interceptors`: the gateway's signing (security/gateway_signing.py);
    `tls`: Settings.temporal_tls(), for a frontend that requires TLS or mTLS.
    Raises TemporalUnreachable when nothing answers there."""
    try:
        return await Client.connect(
            address,
            namespace=namespace,
            data_converter=data_converter(codec),
            runtime=runtime,
            plugins=plugins,
            interceptors=interceptors,
            tls=tls or False,
        )
    except RuntimeError as error:
        # The SDK's core raises a bare RuntimeError with the transport's debug text; callers (the CLI
        # above all) need to tell "not reachable" from a bug, and a person needs one readable line.
        text = str(error)
        if not text.startswith("Failed client connect"):
            raise
        said = re.findall(r'message: "([^"]+)"', text) or re.findall(r'Error\("([^"]+)"', text)
        reason = said[-1] if said else text.splitlines()[0]
        raise TemporalUnreachable(f"Temporal at {address} is not reachable: {reason}") from error


def dev_server_flags() -> list[str]:
    """`temporal server start-dev --search-attribute` flags registering ours at start-up."""
    kinds = {"KEYWORD": "Keyword", "DOUBLE": "Double", "DATETIME": "Datetime", "KEYWORD_LIST": "KeywordList"}
    flags: list[str] = []
    for key in sa.ALL:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register any of our search attributes the server lacks; returns those added.

    The time-skipping test server implements adding but not listing, so a failed list means
    "try each one" and an attribute that already exists is not an error.
    """
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes)
    except RPCError as error:
        if error.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    added = []
    for key in sa.ALL:
        if key.name in known:
            continue
        request = AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={key.name: _INDEXED_TYPE[key.indexed_value_type.name]},
        )
        try:
            await client.operator_service.add_search_attributes(request)
        except RPCError as error:
            if error.status != RPCStatusCode.ALREADY_EXISTS:
                raise
            continue
        added.append(key.name)
    return added


async def memo_or_none(execution: WorkflowExecution, key: str) -> Any:
    """A listed or described workflow's memo value, or None when this process cannot read it (encrypted
    with a key it lacks, or malformed): lists show the row without it rather than fail."""
    try:
        return await execution.memo_value(key, default=None)
    except (KeyError, ValueError, RuntimeError) as error:
        log.warning("memo of %s unreadable: %s", execution.id, error)
        return None
