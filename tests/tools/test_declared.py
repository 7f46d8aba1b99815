"""Declared tools, the pure part: what a declared schema must be, how a call's args are checked and what
facts they state, and the validation activity validating against a declaration (called directly)."""

import http.server
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from countersign.activities.validation import ValidationActivities
from countersign.models.declared_tools import DeclaredTool
from countersign.models.enums import RequestType, Risk, SideEffect
from countersign.models.proposal import Plan, RequestFields, ValidateInput
from countersign.tools.builtin import build_registry
from countersign.tools.declared import (
    MAX_SCHEMA_DEPTH,
    check_declared_args,
    declared_facts,
    schema_problems,
)

REFUND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "pattern": "^ord_[0-9]+$"},
        "amount": {"type": "number", "minimum": 0},
        "lines": {
            "type": "array",
            "items": {"$ref": "#/$defs/line"},
        },
    },
    "required": ["order_id", "amount"],
    "additionalProperties": False,
    "$defs": {
        "line": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
            "required": ["sku", "qty"],
        }
    },
}
REFUND = DeclaredTool(
    tenant="default",
    name="issue_refund",
    version=2,
    description="Refund an order through the shop's own payment service",
    args_schema=REFUND_SCHEMA,
    side_effect=SideEffect.EXTERNAL,
    risk=Risk.HIGH,
)
GOOD_ARGS = {"order_id": "ord_42", "amount": 120.5, "lines": [{"sku": "A-1", "qty": 2}]}


# --- The schema a declaration may carry -----------------------------------------------------------------


def test_a_sound_schema_has_no_problems() -> None:
    assert schema_problems(REFUND_SCHEMA) == []


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "objekt"}, "args_schema.type: 'objekt' is not valid"),
        ({"type": "object", "properties": {"a": {"minimum": "ten"}}}, "args_schema.properties.a.minimum"),
        ({"type": "object", "properties": {"a": {"pattern": "(("}}}, "is not a 'regex'"),
        ({"type": "array"}, 'args_schema.type: must be "object"'),
        ({"properties": {}}, 'args_schema.type: must be "object"'),
        ({"type": "object", "$schema": "http://json-schema.org/draft-04/schema#"}, "draft 2020-12"),
    ],
)
def test_a_schema_that_is_no_object_schema_is_refused(schema: dict[str, Any], expected: str) -> None:
    problems = schema_problems(schema)
    assert problems and expected in problems[0], problems


@pytest.mark.parametrize(
    "ref", ["https://example.com/schemas/money.json", "//example.com/x", "money.json", "#money"]
)
def test_a_reference_out_of_the_schema_is_refused(ref: str) -> None:
    schema = {"type": "object", "properties": {"price": {"$ref": ref}}}
    (problem,) = schema_problems(schema)
    assert problem.startswith("args_schema.properties.price.$ref:"), problem
    assert "never fetched" in problem


def test_identifiers_that_rebase_references_are_refused() -> None:
    schema = {"type": "object", "$id": "https://example.com/root", "properties": {"a": {"$ref": "#"}}}
    (problem,) = schema_problems(schema)
    assert problem.startswith("args_schema.$id:"), problem


def test_a_local_reference_to_nothing_is_refused() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    (problem,) = schema_problems(schema)
    assert "points at nothing" in problem


def test_a_schema_too_deep_or_too_big_is_refused() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(MAX_SCHEMA_DEPTH):
        deep = {"type": "object", "properties": {"x": deep}}
    assert "nested" in schema_problems(deep)[0]
    big = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(2000)}}
    assert "bytes of JSON" in schema_problems(big)[0]


def test_a_pattern_that_can_backtrack_for_ever_is_refused() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}}
    (problem,) = schema_problems(schema)
    assert problem.startswith("args_schema.properties.a.pattern:"), problem
    keyed = {"type": "object", "patternProperties": {"^(x*)*$": {"type": "string"}}}
    (problem,) = schema_problems(keyed)
    assert problem.startswith("args_schema.patternProperties['^(x*)*$']:"), problem
    assert schema_problems({"type": "object", "patternProperties": {"^x_[a-z]+$": {}}}) == []


# --- A call's args --------------------------------------------------------------------------------------


def test_args_that_fit_have_no_findings() -> None:
    assert check_declared_args(REFUND, GOOD_ARGS) == []


def test_each_error_is_one_finding_naming_its_json_path() -> None:
    args = {"order_id": "42", "lines": [{"sku": "A-1", "qty": 0}, {"qty": 1}], "note": "x"}
    findings = check_declared_args(REFUND, args)
    fields = [f.field for f in findings]
    assert fields == sorted(fields)
    assert set(fields) == {"$", "$.amount", "$.order_id", "$.lines[0].qty", "$.lines[1].sku"}, findings
    assert all(f.code == "invalid_args" for f in findings)
    by_field = {f.field: f.message for f in findings}
    assert by_field["$.amount"] == "$.amount: 'amount' is a required property"
    assert "'note' was unexpected" in by_field["$"]
    assert by_field["$.lines[0].qty"].startswith("$.lines[0].qty: 0 is less than the minimum of 1")
    # Deterministic: the same args read the same, whatever order jsonschema found them in.
    assert check_declared_args(REFUND, args) == findings


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        body = b'{"type": "number"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/schema+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def schema_server() -> Iterator[str]:
    """A local server that would answer a schema fetch, and records whether one was tried."""
    _Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/money.json"
    server.shutdown()
    server.server_close()


def test_a_stored_remote_reference_is_never_fetched(schema_server: str) -> None:
    """A schema that reached the store some other way than `POST /tools` still fetches nothing: args
    are validated with an empty reference registry (jsonschema's default would fetch the URL)."""
    tool = REFUND.model_copy(
        update={"args_schema": {"type": "object", "properties": {"amount": {"$ref": schema_server}}}}
    )
    (finding,) = check_declared_args(tool, {"amount": 5})
    assert finding.code == "invalid_schema"
    assert _Recorder.hits == []


@pytest.mark.parametrize(
    ("args", "amount"),
    [
        ({"amount": 52_000}, 52_000.0),
        ({"amount": 19.99, "currency": "EUR"}, 19.99),
        ({"amount": True}, None),
        ({"amount": "52000"}, None),
        ({"amount": -5}, None),
        ({"amount": 10**400}, None),
        ({"total": {"amount": 52_000}}, None),
        ({}, None),
    ],
)
def test_facts_state_a_top_level_numeric_amount(args: dict[str, Any], amount: float | None) -> None:
    facts = declared_facts(REFUND, args)
    assert facts.amount == amount
    assert facts.type == RequestType.GENERAL


# --- The validation activity, given a declared tool -----------------------------------------------------


def plan(args: dict[str, Any], *, tool: str = "issue_refund", confidence: float = 1.0) -> Plan:
    return Plan(
        request_type=RequestType.GENERAL,
        fields=RequestFields(),
        summary="Refund order 42",
        tool=tool,
        args=args,
        confidence=confidence,
        rationale="proposed by the caller",
        planner="caller",
    )


async def validate(request: ValidateInput) -> Any:
    return await ValidationActivities(build_registry()).validate(request)


async def test_the_activity_passes_good_args_of_a_declared_tool() -> None:
    report = await validate(
        ValidateInput(plan=plan(GOOD_ARGS), confidence_threshold=0.5, declared_tool=REFUND)
    )
    assert report.ok, report.findings
    assert report.findings == []
    assert (report.side_effect, report.risk) == (SideEffect.EXTERNAL, Risk.HIGH)
    assert report.normalized_args == GOOD_ARGS
    assert report.facts is not None and report.facts.amount == 120.5


async def test_the_activity_refuses_bad_args_of_a_declared_tool_with_their_paths() -> None:
    bad = {"order_id": "ord_42", "amount": -1, "lines": [{"sku": "A-1", "qty": "two"}]}
    report = await validate(ValidateInput(plan=plan(bad), confidence_threshold=0.5, declared_tool=REFUND))
    assert not report.ok and report.needs_triage
    assert {f.field for f in report.findings} == {"$.amount", "$.lines[0].qty"}
    assert (report.side_effect, report.risk) == (SideEffect.EXTERNAL, Risk.HIGH)
    assert report.facts is None and report.normalized_args is None


async def test_without_the_declaration_the_same_call_is_an_unknown_tool() -> None:
    report = await validate(ValidateInput(plan=plan(GOOD_ARGS), confidence_threshold=0.5))
    assert not report.ok
    assert [f.code for f in report.findings] == ["unknown_tool"]


async def test_a_declaration_for_another_tool_never_passes() -> None:
    report = await validate(
        ValidateInput(plan=plan(GOOD_ARGS, tool="other"), confidence_threshold=0.5, declared_tool=REFUND)
    )
    assert not report.ok
    assert [f.code for f in report.findings] == ["unknown_tool"]


async def test_low_confidence_and_label_checks_apply_to_declared_calls_too() -> None:
    low = plan(GOOD_ARGS, confidence=0.2).model_copy(update={"fields": RequestFields(amount=99.0)})
    report = await validate(ValidateInput(plan=low, confidence_threshold=0.5, declared_tool=REFUND))
    assert not report.ok  # the planner's amount differs from the action's: blocking, as for built-ins
    assert {f.code for f in report.findings} == {"inconsistent", "low_confidence"}
