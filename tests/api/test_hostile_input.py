"""Hostile input on a real uvicorn server: oversized bodies (declared or streamed), deeply nested JSON and
YAML, a YAML alias bomb, invalid UTF-8, huge texts, wrong content types, JSON that Python reads and JSON
has not (NaN, Infinity, lone surrogates) and huge headers. Each gets a clear 4xx with a JSON `detail`
(413 too large, 400 not JSON, 422 JSON that does not fit), and the same server answers the next request."""

import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from countersign.api.limits import MAX_HEADER_BYTES
from countersign.api.main import create_app
from countersign.config.settings import Settings
from tests.api.conftest import Api

MiB = 1024 * 1024
LIMIT = Settings(_env_file=None).max_request_bytes
CODEC_LIMIT = Settings(_env_file=None).max_codec_request_bytes
NESTED_ARRAYS = b"[" * 100_000 + b"]" * 100_000
NESTED_OBJECTS = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
# Each route that reads a JSON body, with its id placeholders filled in by the test.
BODY_ROUTES = [
    ("POST", "/workflows"),
    ("POST", "/workflows/{workflow}/approve"),
    ("POST", "/workflows/{workflow}/edit"),
    ("POST", "/workflows/{workflow}/cancel"),
    ("POST", "/workflows/{workflow}/reassign"),
    ("POST", "/workflows/{workflow}/retry"),
    ("POST", "/approvals/batch"),
    ("PUT", "/principals/me/delegate"),
    ("POST", "/principals"),
    ("POST", "/graph/create"),
    ("POST", "/graphs"),
    ("POST", "/graph/run"),
    ("POST", "/graph/runs/{run}/approve"),
    ("POST", "/codec/encode"),
    ("POST", "/codec/decode"),
    ("POST", "/tools"),
]


@pytest.fixture
async def http(api: Api, served: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the uvicorn server, authenticated as an ADMIN (who may reach every body route), with
    payload encryption on so the codec routes parse their bodies."""
    keys = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    api.app.state.codec = Settings(_env_file=None, encryption_keys=keys).payload_codec()
    async with httpx.AsyncClient(base_url=f"http://{served}", headers=api.as_("admin"), timeout=60) as client:
        yield client


async def still_up(http: httpx.AsyncClient) -> None:
    """The server answers a well-formed request after the hostile one."""
    me = await http.get("/principals/me")
    assert me.status_code == 200, me.text
    submitted = await http.post("/workflows", json={"text": "Buy 3 chairs for $300"})
    assert submitted.status_code == 201, submitted.text


def refused(response: httpx.Response, *statuses: int) -> Any:
    """The response is one of `statuses`, in JSON with a `detail`; returns the detail."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    detail = response.json()["detail"]
    assert detail, response.text[:500]
    return detail


async def ids(http: httpx.AsyncClient) -> dict[str, str]:
    submitted = await http.post("/workflows", json={"text": "Buy 3 chairs for $300"})
    run = await http.post("/graph/run", json={"graph_id": "demo-review", "input_data": "x = 1\n"})
    return {"workflow": submitted.json()["workflow_id"], "run": run.json()["run_id"]}


# --- Size ----------------------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_refused_by_its_content_length(http: httpx.AsyncClient) -> None:
    ten_mb = b'{"text": "' + b"x" * (10 * MiB) + b'"}'
    response = await http.post("/workflows", content=ten_mb, headers={"Content-Type": "application/json"})
    assert f"larger than {LIMIT} bytes" in refused(response, 413)
    # Every body route, and one that takes no body: the limit is the gateway's, before any route.
    where = await ids(http)
    for method, template in [*BODY_ROUTES, ("GET", "/tools")]:
        url = template.format(**where)
        limit = CODEC_LIMIT if url.startswith("/codec/") else LIMIT
        over = b"[" + b"0," * (limit // 2) + b"0]"
        response = await http.request(method, url, content=over, headers={"Content-Type": "application/json"})
        assert f"larger than {limit} bytes" in refused(response, 413), url
    await still_up(http)


async def test_a_streamed_body_is_counted_as_it_arrives(http: httpx.AsyncClient) -> None:
    """Chunked, with no Content-Length to go by: refused once it passes the limit."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(3 * LIMIT // (64 * 1024)):
            yield b"x" * (64 * 1024)
        yield b'"}'

    response = await http.post("/workflows", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert f"larger than {LIMIT} bytes" in refused(response, 413)

    async def small() -> AsyncIterator[bytes]:
        yield b'{"text": "Buy 3 chairs'
        yield b' for $300"}'

    accepted = await http.post("/workflows", content=small(), headers={"Content-Type": "application/json"})
    assert accepted.status_code == 201, accepted.text
    await still_up(http)


async def test_bodies_under_the_limit_reach_the_routes_own_caps(http: httpx.AsyncClient) -> None:
    # A request text over its 8,000 characters, well under the body limit: the model refuses it.
    huge_text = await http.post("/workflows", json={"text": "x" * 500_000})
    assert any(e["type"] == "string_too_long" for e in refused(huge_text, 422))
    # A graph run's input over its 256 KB.
    big_input = await http.post("/graph/run", json={"graph_id": "demo-review", "input_data": "y" * 300_000})
    assert "larger than 256 KB" in str(refused(big_input, 422))
    # The codec routes carry Temporal payloads and have a larger limit of their own: 2 MB passes it.
    payload = {"payloads": [{"metadata": {}, "data": base64.b64encode(os.urandom(2 * MiB)).decode()}]}
    encoded = await http.post("/codec/encode", json=payload)
    assert encoded.status_code == 200, encoded.text[:300]
    decoded = await http.post("/codec/decode", json=encoded.json())
    assert [(p.get("metadata", {}), p["data"]) for p in decoded.json()["payloads"]] == [
        ({}, payload["payloads"][0]["data"])
    ]
    await still_up(http)


async def test_the_limit_is_a_setting(tmp_path: Any) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, max_request_bytes=64 * 1024)
    app = create_app(settings)  # not attached: the limit answers before any route or dependency
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post("/workflows", content=b"x" * (64 * 1024 + 1))
    assert f"larger than {64 * 1024} bytes" in refused(response, 413)
    with pytest.raises(ValueError, match="max_request_bytes"):
        Settings(_env_file=None, max_request_bytes=10)


# --- Shape ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [NESTED_ARRAYS, NESTED_OBJECTS], ids=["arrays", "objects"])
async def test_deeply_nested_json_is_malformed_not_a_crash(http: httpx.AsyncClient, body: bytes) -> None:
    where = await ids(http)
    for method, template in BODY_ROUTES:
        url = template.format(**where)
        response = await http.request(method, url, content=body, headers={"Content-Type": "application/json"})
        refused(response, 422)  # JSON, but deeper than any body of this API
    await still_up(http)


async def test_yaml_definitions_refuse_deep_nesting_and_alias_bombs(http: httpx.AsyncClient) -> None:
    yaml_headers = {"Content-Type": "application/yaml"}
    nested = await http.post("/graph/create", content=b"[" * 100_000 + b"]" * 100_000, headers=yaml_headers)
    assert "nested deeper than" in refused(nested, 422)
    # "Billion laughs": 500 bytes that expand to 9**8 strings. Without the guard, validation failed on
    # the expanded value and the error response never finished rendering, the whole server with it.
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    bomb = "id: bomb\nnodes: [{id: n, fn: review.extract}]\n" + "\n".join(lines) + "\ndescription: *a7\n"
    exploded = await http.post("/graph/create", content=bomb, headers=yaml_headers)
    assert "aliases" in refused(exploded, 422)
    # A plain definition still goes through.
    plain = "id: plain-yaml\nnodes:\n  - {id: extract, fn: review.extract}\n"
    assert (await http.post("/graph/create", content=plain, headers=yaml_headers)).status_code == 201
    await still_up(http)


async def test_invalid_utf8_is_malformed_not_a_crash(http: httpx.AsyncClient) -> None:
    where = await ids(http)
    for body in (
        b'{"text": "\xff\xfe caf\xe9 \xc3"}',
        b"\xef\xbb\xbf\x80{}",
        b'{"graph_id": "\xed\xa0\x80"}',
    ):
        for method, template in BODY_ROUTES:
            url = template.format(**where)
            for content_type in ("application/json", "application/yaml"):
                response = await http.request(
                    method, url, content=body, headers={"Content-Type": content_type}
                )
                refused(response, 400)
    await still_up(http)


@pytest.mark.parametrize(
    ("content_type", "body", "code"),
    [
        # Not JSON at all (README: 400): another media type, or not parseable as JSON.
        ("text/plain", b'{"text": "Buy 3 chairs for $300"}', 400),
        ("application/x-www-form-urlencoded", b"text=Buy+3+chairs", 400),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--x--',
            400,
        ),
        ("application/xml", b"<text>Buy 3 chairs</text>", 400),
        ("application/json", b"{'text': 'single quotes'}", 400),
        ("application/json", b'{"text": "Buy 3 chairs for $300"', 400),
        ("application/json", b'{"text": NaN}', 400),
        (None, b'{"text": "Buy 3 chairs for $300"}', 400),  # JSON only when the Content-Type says so
        # JSON (or no body) that does not fit the request: 422.
        ("application/json", b"", 422),
        ("application/json", b"null", 422),
        ("application/json", b'"just a string"', 422),
        ("application/json", b'{"text": 5}', 422),
    ],
)
async def test_wrong_content_types_and_shapes_are_refused(
    http: httpx.AsyncClient, content_type: str | None, body: bytes, code: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await http.post("/workflows", content=body, headers=headers)
    detail = refused(response, code)
    if code == 400:  # and says what to send instead
        assert "JSON" in str(detail), detail
    await still_up(http)


# --- What Python's JSON parser reads and JSON has not --------------------------------------------------

NOT_JSON = [
    (b'{"text": "hello there", "fields": {"zzz": NaN}}', "NaN is not JSON", 400),
    (b'{"text": "hello there", "fields": {"zzz": Infinity}}', "Infinity is not JSON", 400),
    (b'{"items": [-Infinity]}', "-Infinity is not JSON", 400),
    # A backslash, then `ud800`: text, which the gate lets through.
    (rb'{"text": "hello \\ud800 there"}', None, 0),
    (rb'{"input_data": "\ud800", "args": {"k": "\udfff"}}', "not Unicode", 400),
    ('{"input_data": "\udc80"}'.encode("utf-8", "surrogatepass"), "not Unicode", 400),  # a surrogate's bytes
    # JSON, but deeper than this API takes: a 422 like any body that does not fit.
    (b'{"args": ' + b'{"k": [' * 40 + b"1" + b"]}" * 40 + b"}", "nested deeper than 64", 422),
]


@pytest.mark.parametrize(
    ("body", "why", "code"), NOT_JSON, ids=lambda v: str(v)[:40] if isinstance(v, bytes) else str(v)
)
async def test_json_bodies_hold_only_json_on_every_route(
    http: httpx.AsyncClient, body: bytes, why: str | None, code: int
) -> None:
    """The finding: `{"fields": {"zzz": NaN}}` was a 201 and a workflow no worker could ever decode (its
    GET and cancel answered 500 for ever). Every body route now refuses such a body, before the route."""
    where = await ids(http)
    for method, template in BODY_ROUTES:
        url = template.format(**where)
        for content_type in ("application/json", "application/merge-patch+json", None):
            headers = {"Content-Type": content_type} if content_type else {}
            response = await http.request(method, url, content=body, headers=headers)
            if why is None:
                assert response.status_code != 500, (url, response.text[:300])
                continue
            (error,) = refused(response, code)
            assert error["type"] == "json_invalid" and error["loc"] == ["body"], error
            assert why in error["msg"], (url, error)
    await still_up(http)


async def test_the_poisoned_submit_of_the_finding_starts_nothing(api: Api, http: httpx.AsyncClient) -> None:
    before = (await http.get("/workflows", params={"limit": 500})).json()["items"]
    response = await http.post(
        "/workflows",
        content=b'{"text":"hello there","fields":{"zzz":NaN}}',
        headers={"Content-Type": "application/json", "Idempotency-Key": "poison-1"},
    )
    assert "NaN is not JSON" in refused(response, 400)[0]["msg"]
    # The same key with a body that is JSON starts a workflow, which a GET and a cancel can reach.
    fine = await http.post(
        "/workflows",
        json={"text": "hello there", "fields": {"zzz": 1.5}},
        headers={"Idempotency-Key": "poison-1"},
    )
    assert fine.status_code == 201, fine.text
    workflow_id = fine.json()["workflow_id"]
    assert workflow_id not in {item["workflow_id"] for item in before}
    assert (await http.get(f"/workflows/{workflow_id}")).status_code == 200
    cancelled = await http.post(f"/workflows/{workflow_id}/cancel", json={"reason": "a test"})
    assert cancelled.status_code in (200, 409), cancelled.text


async def test_yaml_definitions_refuse_what_json_has_not(http: httpx.AsyncClient) -> None:
    """YAML has its own NaN (`.nan`) and is not the gate's: the definition's model refuses it."""
    for value in (".nan", ".inf", "[-.inf]"):
        text = f"id: yaml-nan\nnodes: [{{id: extract, fn: review.extract}}]\ndefaults: {{x: {value}}}\n"
        yaml_headers = {"Content-Type": "application/yaml"}
        response = await http.post("/graph/create", content=text, headers=yaml_headers)
        assert "finite" in str(refused(response, 422)), value
    await still_up(http)


# --- Headers -------------------------------------------------------------------------------------------


async def test_huge_headers_are_refused_and_the_server_stays_up(api: Api, http: httpx.AsyncClient) -> None:
    # The HTTP server refuses a head it receives in pieces past 16 KiB (400, plain text, before the app
    # runs); one it gets at once reaches the gateway's own cap (431, JSON).
    response = await http.get("/principals/me", headers={"X-Padding": "p" * (64 * 1024)})
    assert response.status_code in (400, 431), response.status_code
    if response.status_code == 431:
        assert "headers are larger than" in refused(response, 431)
    await still_up(http)
    # Without a server in front (the ASGI app alone, or behind a proxy that lets it through): the cap.
    huge = await api.http.get("/principals/me", headers={"Authorization": "Bearer " + "k" * MiB})
    assert f"larger than {MAX_HEADER_BYTES} bytes" in refused(huge, 431)
    assert "k" * 100 not in huge.text
    # Under the caps, the app's own checks answer: a long key is a bad key, a long Idempotency-Key a
    # malformed request.
    long_key = await http.get("/principals/me", headers={"Authorization": "Bearer " + "k" * 12_000})
    refused(long_key, 401)
    long_idempotency = await http.post(
        "/workflows", json={"text": "Buy 3 chairs for $300"}, headers={"Idempotency-Key": "i" * 12_000}
    )
    refused(long_idempotency, 422)
    await still_up(http)
