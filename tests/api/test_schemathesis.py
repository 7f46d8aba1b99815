"""Schemathesis against the gateway's own OpenAPI, on a real uvicorn server over a real worker: whatever
the schema allows (and, in negative mode, what it forbids), the gateway answers without a 5xx, with a
status code the route documents, and with a body that matches the documented schema.

Bounded and repeatable: a fixed number of examples per route and mode, derandomized (the same inputs on
every run), no shrinking. The WebSocket route is not in the OpenAPI; test_auth_matrix.py covers it.
"""

import asyncio
import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from countersign.settings import Settings
from tests.api.conftest import Api
from tests.helpers import eventually

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
# Examples per route and generation mode (about 30 routes), then per route, id and principal on real ids.
GENERATED = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 20}
# Examples per route against a real workflow or graph run in the path (decisions, views, audit).
ON_REAL_IDS = 8
HOP_BY_HOP = {"transfer-encoding", "content-length", "connection", "te", "upgrade", "host", "keep-alive"}
TIMEOUT = 60  # per request, generous for a loaded 2-core machine; it bounds a hang, it is not measured


@dataclass
class Fuzz:
    base_url: str
    failures: list[str] = field(default_factory=list)
    requests_sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def run(
        self, operation: APIOperation, mode: GenerationMode, examples: int, key: str, **fixed: Any
    ) -> None:
        """Send `examples` generated requests; a failing route is reported, and the others still run."""
        session = requests.Session()
        headers = {"Authorization": f"Bearer {key}"}

        @given(case=operation.as_strategy(generation_mode=mode, **fixed))
        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def one(case: Case) -> None:
            # Framing headers belong to HTTP, not to the API: a generated `Transfer-Encoding: v0` is
            # refused by the HTTP server (h11) in plain text before the gateway sees the request.
            for name in [h for h in case.headers or {} if h.lower() in HOP_BY_HOP]:
                del case.headers[name]  # type: ignore[union-attr]
            response = case.call(base_url=self.base_url, session=session, headers=headers, timeout=TIMEOUT)
            self.requests_sent += 1
            self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            one()
        # A check's FailureGroup (a BaseExceptionGroup), or an error sending the request.
        except (Exception, BaseExceptionGroup) as error:
            self.failures.append(f"{operation.label} ({mode.value}, {fixed or 'generated'}):\n{error}")
        finally:
            session.close()


def operations(schema: Any) -> Iterator[APIOperation]:
    for result in schema.get_all_operations():
        yield result.ok()


def takes_input(operation: APIOperation) -> bool:
    parts = (operation.path_parameters, operation.query, operation.headers, operation.body)
    return any(len(part) for part in parts)


async def waiting_workflow(api: Api) -> str:
    submitted = await api.http.post(
        "/workflows",
        json={"text": "Follow up with ABC Logistics (sales@abclogistics.com) about pricing"},
        headers=api.as_("requester"),
    )
    assert submitted.status_code == 201, submitted.text
    workflow_id = str(submitted.json()["workflow_id"])

    async def state() -> str:
        view = await api.http.get(f"/workflows/{workflow_id}", headers=api.as_("requester"))
        return str(view.json().get("state")) if view.status_code == 200 else ""

    await eventually(state, lambda s: s == "WAITING_FOR_APPROVAL", timeout=60)
    return workflow_id


async def graph_run(api: Api) -> str:
    started = await api.http.post(
        "/graph/run", json={"graph_id": "demo-review", "input_data": "x = 1\n"}, headers=api.as_("requester")
    )
    assert started.status_code == 202, started.text
    return str(started.json()["run_id"])


async def test_every_route_keeps_the_promises_of_its_openapi(api: Api, served: str) -> None:
    # Payload encryption on, so /codec/encode and /codec/decode do their work rather than answer 404.
    keys = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    api.app.state.codec = Settings(_env_file=None, encryption_keys=keys).payload_codec()
    raw = (await api.http.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(raw)
    # The credential is always the valid one given below; missing and bad ones are test_auth_matrix.py's.
    schema.config.generation.update(with_security_parameters=False)
    routes = list(operations(schema))
    assert len(routes) >= 28, [r.label for r in routes]
    workflow_id, run_id = await waiting_workflow(api), await graph_run(api)
    fuzz = Fuzz(base_url=f"http://{served}")

    def everything() -> None:
        for operation in routes:
            for mode, examples in GENERATED.items():
                if mode == GenerationMode.NEGATIVE and not takes_input(operation):
                    continue  # nothing to make invalid
                fuzz.run(operation, mode, examples, api.keys["admin"])
        # The same routes with ids that exist: an approval workflow and a graph run, each in the other's
        # place too, and the shipped graph; by a reviewer (MANAGER, whom the workflow waits on) and an ADMIN.
        real_ids = {
            "workflow_id": (workflow_id, run_id),
            "run_id": (run_id, workflow_id),
            "graph_id": ("demo-review",),
        }
        for operation in routes:
            for name in {p.name for p in operation.path_parameters} & set(real_ids):
                for real in real_ids[name]:
                    for who in ("manager", "admin"):
                        fuzz.run(
                            operation,
                            GenerationMode.POSITIVE,
                            ON_REAL_IDS,
                            api.keys[who],
                            path_parameters={name: real},
                        )

    # The server runs on this event loop; the synchronous client must not block it.
    await asyncio.to_thread(everything)
    assert not fuzz.failures, "\n\n".join(fuzz.failures)
    # It did exercise the gateway: successes and refusals both, on every route.
    assert fuzz.requests_sent >= len(routes) * sum(GENERATED.values()) // 2, fuzz.requests_sent
    print(f"{fuzz.requests_sent} requests; statuses: {dict(sorted(fuzz.statuses.items()))}")
    assert {200, 201, 204, 400, 404, 409, 422} <= set(fuzz.statuses), fuzz.statuses
    # The server is still up and still answers.
    async with httpx.AsyncClient(base_url=f"http://{served}") as http:
        assert (await http.get("/principals/me", headers=api.as_("admin"))).status_code == 200
