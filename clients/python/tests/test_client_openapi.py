"""The client's models against the live gateway's `/openapi.json`: what the client reads, the server
sends (every field the client declares exists there, with a type the client accepts, and is required
there when the client requires it); what the client sends, the server takes (every field exists with a
type the server accepts, and every field the server requires is one the client sends)."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from countersign.api.main import create_app
from countersign.config.settings import Settings
from countersign_client import models

Schema = dict[str, Any]
ANY = None  # a schema that admits any JSON type

# (client model, route, where in it) — the schemas the client mirrors, found through the routes that use
# them, so a renamed component is followed.
READ = [
    (models.SubmitResponse, "post", "/workflows", "201"),
    (models.WorkflowView, "get", "/workflows/{workflow_id}", "200"),
    (models.WorkflowView, "post", "/workflows/{workflow_id}/approve", "200"),
    (models.ToolList, "get", "/tools", "200"),
    (models.WorkflowList, "get", "/approvals/inbox", "200"),
]
SENT = [
    (models.SubmitRequest, "post", "/workflows"),
    (models.ApproveRequest, "post", "/workflows/{workflow_id}/approve"),
    (models.ResultReport, "post", "/workflows/{workflow_id}/result"),
]
# Fields and routes of the server contract still being built: each is checked as soon as the gateway
# has it; until then its absence is reported as pending. (Empty: the whole contract has landed.)
PENDING: set[str] = set()


@pytest.fixture(scope="module")
async def openapi(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Schema]:
    """The real app's `/openapi.json`, served over ASGI (no Temporal needed to describe it)."""
    app = create_app(Settings(data_dir=Path(tmp_path_factory.mktemp("openapi"))))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/openapi.json")
    assert response.status_code == 200, response.text
    document: Schema = response.json()
    yield document


class Doc:
    """A schema inside its document, so `$ref`s resolve (`#/components/schemas/…` or `#/$defs/…`)."""

    def __init__(self, root: Schema) -> None:
        self.root = root

    def resolve(self, schema: Schema) -> Schema:
        while "$ref" in schema:
            node: Any = self.root
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema

    def kinds(self, schema: Schema) -> set[str] | None:
        """The JSON types a schema admits; ANY when it does not say."""
        schema = self.resolve(schema)
        own = schema.get("type")
        if own is not None:
            # A schema's own type holds for each of its branches too (`anyOf` of `required` lists, say).
            return {own} if isinstance(own, str) else set(own)
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            out: set[str] = set()
            for branch in branches:
                kinds = self.kinds(branch)
                if kinds is ANY:
                    return ANY
                out |= kinds
            return out
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.kinds(schema["allOf"][0])
        values = [schema["const"]] if "const" in schema else schema.get("enum")
        if values is not None:
            return {json_type(v) for v in values}
        kind = schema.get("type")
        if kind is None:
            return ANY
        return {kind} if isinstance(kind, str) else set(kind)

    def object(self, schema: Schema) -> Schema | None:
        """The object-with-properties branch of a schema, if it has one."""
        schema = self.resolve(schema)
        if "properties" in schema:
            return schema
        for branch in schema.get("anyOf") or schema.get("oneOf") or []:
            found = self.object(branch)
            if found is not None:
                return found
        return None

    def items(self, schema: Schema) -> Schema | None:
        schema = self.resolve(schema)
        if schema.get("type") == "array":
            items: Schema = schema.get("items", {})
            return items
        for branch in schema.get("anyOf") or []:
            found = self.items(branch)
            if found is not None:
                return found
        return None


def json_type(value: object) -> str:
    return {
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
        list: "array",
        dict: "object",
    }[type(value)]


def fits(given: set[str] | None, taken: set[str] | None) -> bool:
    """Every type `given` admits is one `taken` admits (an integer is a number)."""
    if taken is ANY:
        return True
    if given is ANY:
        return False
    return all(kind in taken or (kind == "integer" and "number" in taken) for kind in given)


def compare(client: tuple[Doc, Schema], server: tuple[Doc, Schema], where: str, sends: bool) -> list[str]:
    """Problems between a client schema and the server's, recursing into objects and arrays.
    `sends`: the client sends it (the server must take it); otherwise the client reads it."""
    (cdoc, cschema), (sdoc, sschema) = client, server
    ckinds, skinds = cdoc.kinds(cschema), sdoc.kinds(sschema)
    ok = fits(ckinds, skinds) if sends else fits(skinds, ckinds)
    problems = [] if ok else [f"{where}: client {ckinds}, server {skinds}"]
    cobj, sobj = cdoc.object(cschema), sdoc.object(sschema)
    if cobj is not None and sobj is not None:
        name = where.rsplit(".", 1)[-1] if "." in where else where
        srequired = set(sobj.get("required", []))
        crequired = set(cobj.get("required", []))
        for field, sub in cobj["properties"].items():
            path = f"{name}.{field}" if "." not in where else f"{where}.{field}"
            label = f"{cobj.get('title', name)}.{field}"
            if field not in sobj["properties"]:
                problems.append(f"{label}: not in the server's schema")
                continue
            if not sends and field in crequired and field not in srequired:
                problems.append(f"{label}: required by the client, optional on the server")
            problems += compare((cdoc, sub), (sdoc, sobj["properties"][field]), path, sends)
        if sends:
            problems += [
                f"{cobj.get('title', name)}.{field}: required by the server, not sent by the client"
                for field in sorted(srequired - set(cobj["properties"]))
            ]
    citems, sitems = cdoc.items(cschema), sdoc.items(sschema)
    if citems is not None and sitems is not None:
        problems += compare((cdoc, citems), (sdoc, sitems), f"{where}[]", sends)
    return problems


def pending(problem: str) -> bool:
    """Only absence is pending: a field the server has must already fit."""
    return any(problem == f"{name}: not in the server's schema" for name in PENDING)


def check(problems: list[str]) -> None:
    real = [p for p in problems if not pending(p)]
    assert not real, "\n".join(real)
    for problem in problems:
        print(f"pending on the server side: {problem}")


def client_schema(model: type[BaseModel], mode: str) -> tuple[Doc, Schema]:
    schema = model.model_json_schema(mode="serialization" if mode == "send" else "validation")
    return Doc(schema), schema


@pytest.mark.parametrize(("model", "method", "path", "status"), READ, ids=lambda v: getattr(v, "__name__", v))
def test_what_the_client_reads_is_what_the_server_sends(
    openapi: Schema, model: type[BaseModel], method: str, path: str, status: str
) -> None:
    answer = openapi["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    check(compare(client_schema(model, "read"), (Doc(openapi), answer), model.__name__, sends=False))


@pytest.mark.parametrize(("model", "method", "path"), SENT, ids=lambda v: getattr(v, "__name__", v))
def test_what_the_client_sends_is_what_the_server_takes(
    openapi: Schema, model: type[BaseModel], method: str, path: str
) -> None:
    route = openapi["paths"].get(path, {}).get(method)
    if route is None:
        assert f"{method} {path}" in PENDING, f"the gateway has no {method} {path}"
        pytest.skip(f"pending on the server side: {method} {path} (issue 19)")
    body = route["requestBody"]["content"]["application/json"]["schema"]
    check(compare(client_schema(model, "send"), (Doc(openapi), body), model.__name__, sends=True))


def test_the_comparison_sees_a_field_the_server_does_not_have(openapi: Schema) -> None:
    """The check itself: a model with a misnamed field, or a type the server does not send, is caught."""

    class WorkflowView(models.WorkflowView):
        workflow: str
        current_step: str | None = None  # type: ignore[assignment]

    answer = openapi["paths"]["/workflows/{workflow_id}"]["get"]["responses"]["200"]["content"]
    problems = compare(
        client_schema(WorkflowView, "read"),
        (Doc(openapi), answer["application/json"]["schema"]),
        "WorkflowView",
        False,
    )
    assert any(p.startswith("WorkflowView.workflow: not in") for p in problems), problems
    assert any(p.startswith("WorkflowView.current_step:") for p in problems), problems
