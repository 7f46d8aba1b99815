"""Every body the API accepts reaches its workflow intact: a property test over the request models.

A request the gateway accepts but Temporal's data converter cannot carry makes a workflow no worker can
decode, which can then never run, be read or be cancelled (a NaN in `fields` once did). So, for bodies
generated from each request model's own JSON schema, with hostile values mixed in at every leaf (NaN and
infinities, lone surrogates, huge integers, deep nesting where any JSON goes):

- through the gateway (the JSON gate of api/json_gate.py, Python's JSON parser, the model): the body is
  refused, or `check_round_trip` passes;
- the model alone, given the same values as Python objects: it refuses them, or `check_round_trip`
  passes. The models must hold without the gateway: the service builds workflow inputs from them.

Derandomized (the same examples on every run) and without a database, like the schemathesis tests.
"""

import json
import math
import re
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from countersign.api.json_gate import MAX_DEPTH, json_problem
from countersign.api.main import create_app
from countersign.config.settings import Settings
from countersign.graphs.validation import parse_definition
from countersign.models.channels import ChannelPreferences
from countersign.models.decisions import (
    ApproveRequest,
    BatchRequest,
    CancelRequest,
    EditRequest,
    NodeDecisionRequest,
    ReassignRequest,
    ResultRequest,
    RetryRequest,
)
from countersign.models.declared_tools import DeclareToolRequest
from countersign.models.enums import Role
from countersign.models.graph import GraphDefinition, RunGraphRequest
from countersign.models.principal_admin import AddPrincipalRequest
from countersign.models.principals import DelegateRequest
from countersign.models.requests import SubmitRequest
from countersign.models.wire import MAX_VALUE_DEPTH, WireError, check_round_trip

# Every model a route reads its body into (GraphDefinition: /graph/create parses its body itself).
REQUEST_MODELS: list[type[BaseModel]] = [
    SubmitRequest,
    EditRequest,
    ApproveRequest,
    NodeDecisionRequest,
    BatchRequest,
    CancelRequest,
    ReassignRequest,
    RetryRequest,
    DelegateRequest,
    RunGraphRequest,
    GraphDefinition,
    DeclareToolRequest,
    ResultRequest,
    ChannelPreferences,
    AddPrincipalRequest,
]
EXAMPLES = 150
PROPERTY = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

# A JSON Schema date-time is RFC 3339, whose offsets are whole minutes. (IANA zones before 1900 have
# local-mean-time offsets in seconds, which isoformat writes and no date-time parser need accept: drawn
# from them, about half the "plain" date-times were not date-times, and how many bodies got through
# varied with Hypothesis's seed, which depends on the modules already imported.)
RFC3339_OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)

HOSTILE_NUMBERS = st.sampled_from([math.nan, math.inf, -math.inf, 10**400, -(2**64), 1e308, -0.0])
# Any code point, lone surrogates (category Cs) and NUL included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
HOSTILE_TEXT = st.one_of(
    ANY_TEXT,
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u2028", "😀", " " * 3, "NaN", "Infinity"]),
)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


DEEP = st.sampled_from([MAX_VALUE_DEPTH, MAX_VALUE_DEPTH + 1, MAX_DEPTH, MAX_DEPTH + 1, 150, 199, 250]).map(
    nested
)
# What JSON (and Python's parser) can hold, hostile values included.
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), HOSTILE_NUMBERS, ANY_TEXT, HOSTILE_TEXT),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(HOSTILE_TEXT, children, max_size=4)
    ),
    max_leaves=12,
).flatmap(lambda value: st.one_of(st.just(value), DEEP))


def strategy(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for a pydantic JSON schema, mostly valid, with a hostile value possible at every leaf."""
    if "$ref" in schema:
        return st.deferred(lambda: strategy(defs[schema["$ref"].rsplit("/", 1)[-1]], defs))
    branches = schema.get("anyOf", [])
    if "properties" in schema and branches and all(set(branch) == {"required"} for branch in branches):
        # An object that needs one of several sets of fields (SubmitRequest: text or action): each way.
        options = [{**schema, "required": [*schema.get("required", []), *b["required"]]} for b in branches]
        return st.one_of([_object(option, defs) for option in options])
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            return st.one_of([strategy(option, defs) for option in schema[combinator]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return sometimes(st.sampled_from(schema["enum"]), HOSTILE_TEXT)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _object(schema, defs)
    if kind == "array":
        low = schema.get("minItems", 0)
        items = strategy(schema.get("items", {}), defs)
        return st.lists(items, min_size=low, max_size=min(schema.get("maxItems", low + 3), low + 3))
    if kind == "string":
        return _string(schema)
    # Pydantic writes `ge`/`le` for constraints it cannot place elsewhere (an Annotated with a validator).
    low, high = schema.get("minimum", schema.get("ge")), schema.get("maximum", schema.get("le"))
    if kind == "integer":
        return sometimes(st.integers(low, high), HOSTILE_NUMBERS)
    if kind == "number":
        return sometimes(st.floats(low, high), HOSTILE_NUMBERS)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return JSON_VALUES  # `{}`: any JSON


def _object(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fields = {name: strategy(sub, defs) for name, sub in properties.items()}
    fixed = st.fixed_dictionaries(
        {name: fields[name] for name in properties if name in required},
        optional={name: fields[name] for name in properties if name not in required},
    )
    extra = schema.get("additionalProperties")
    if extra not in (None, False) and not properties:  # a dict: `true` (any value) or a schema
        keys = _string(schema.get("propertyNames", {"type": "string", "maxLength": 70}))
        values = JSON_VALUES if extra is True else strategy(extra, defs)
        return st.dictionaries(keys, values, max_size=min(schema.get("maxProperties", 4), 4))
    return fixed


def _string(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    low, high = schema.get("minLength", 0), schema.get("maxLength", 200)
    if "pattern" in schema:
        # Without its anchors: Python's `$` also matches before a final newline, the schema's does not.
        pattern = schema["pattern"].removeprefix("^").removesuffix("$")
        plain = st.from_regex(pattern, fullmatch=True).filter(lambda s: low <= len(s) <= high)
    elif schema.get("format") == "date-time":
        plain = st.datetimes(timezones=RFC3339_OFFSETS).map(lambda moment: moment.isoformat())
    else:
        plain = st.text(min_size=low, max_size=min(high, low + 30))
    return sometimes(plain, HOSTILE_TEXT)


def sometimes(plain: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly `plain` (5 in 6): a body has many leaves, and one hostile leaf is enough. (`one_of` would
    not weigh: it drops repeated strategies.)"""
    return st.integers(0, 5).flatmap(lambda pick: hostile if pick == 0 else plain)


# Cross-field rules a schema cannot say (a task node names a function, an approval node a role) would
# refuse nearly every generated definition: its nodes and groups are drawn valid, the rest from the schema.
VALID_NODES = st.lists(
    st.sampled_from(
        [
            {"id": "extract", "fn": "review.extract"},
            {"id": "ask", "kind": "approval", "approval": {"role": "MANAGER", "prompt": "Go?"}},
            {"id": "done", "kind": "end"},
        ]
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda node: node["id"],
)
# A reassignment names exactly one target; each target's value still drawn with its hostile leaves.
ONE_TARGET = st.one_of(
    st.fixed_dictionaries(
        {
            "to_role": sometimes(st.sampled_from([role.value for role in Role]), HOSTILE_TEXT),
            "to_principal_id": st.none(),
        }
    ),
    st.fixed_dictionaries(
        {"to_role": st.none(), "to_principal_id": _string({"minLength": 1, "maxLength": 64})}
    ),
)
VALID_PARTS: dict[type[BaseModel], st.SearchStrategy[dict[str, Any]]] = {
    GraphDefinition: st.fixed_dictionaries({"nodes": VALID_NODES, "parallel": st.just([])}),
    ReassignRequest: ONE_TARGET,
}


def bodies(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    schema = model.model_json_schema()
    generated = strategy(schema, schema.get("$defs", {}))
    valid = VALID_PARTS.get(model)
    if valid is not None:
        generated = st.tuples(generated, valid).map(
            lambda pair: {**pair[0], **pair[1]} if isinstance(pair[0], dict) else pair[0]
        )
    return sometimes(generated, JSON_VALUES)


def accepted(model: type[BaseModel], value: Any) -> BaseModel | None:
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def through_the_gateway(model: type[BaseModel], value: Any) -> BaseModel | None:
    """What a route would hand the service for this body: None when refused on the way."""
    try:
        body = json.dumps(value).encode()  # Python writes NaN, Infinity and \ud800 escapes, as a client may
    except ValueError:  # an integer too long to write
        return None
    if json_problem(body) is not None:
        return None
    return accepted(model, json.loads(body))


def assert_carried(request: BaseModel) -> None:
    try:
        check_round_trip(request)
    except WireError as error:
        pytest.fail(f"{type(request).__name__} accepted what cannot reach a workflow: {request!r}: {error}")


def test_the_list_covers_every_body_of_the_app() -> None:
    """A route added with a new body model fails here until the model is in REQUEST_MODELS."""
    schema = create_app(Settings(_env_file=None)).openapi()
    named = {
        content["schema"]["$ref"].rsplit("/", 1)[-1]
        for path in schema["paths"].values()
        for operation in path.values()
        for content in operation.get("requestBody", {}).get("content", {}).values()
        if "$ref" in content.get("schema", {})
    }
    assert named <= {model.__name__ for model in REQUEST_MODELS}, named


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda model: model.__name__)
def test_every_body_the_gateway_accepts_reaches_its_workflow_intact(model: type[BaseModel]) -> None:
    carried = 0

    @given(value=bodies(model))
    @PROPERTY
    def check(value: Any) -> None:
        nonlocal carried
        request = through_the_gateway(model, value)
        if request is not None:
            assert_carried(request)
            carried += 1

    check()
    # Not vacuous: a good share of the bodies got through, each to be carried.
    assert carried >= EXAMPLES // 10, carried


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda model: model.__name__)
def test_every_value_the_model_accepts_reaches_its_workflow_intact(model: type[BaseModel]) -> None:
    carried = 0

    @given(value=bodies(model))
    @PROPERTY
    def check(value: Any) -> None:
        nonlocal carried
        request = accepted(model, value)
        if request is not None:
            assert_carried(request)
            carried += 1

    check()
    assert carried >= EXAMPLES // 10, carried


# --- What the property found, kept as plain examples -----------------------------------------------


@given(value=st.just(None))
@example(value=nested(MAX_VALUE_DEPTH + 1))
@example(value=nested(199))  # the converter's own limit: no worker could have decoded the run's input
@example(value=math.nan)
@example(value={"x": [math.inf]})
@example(value={"\ud800": 1})
@example(value="caf\udce9")
@settings(database=None, deadline=None)
def test_a_graph_run_refuses_an_input_it_could_not_carry(value: Any) -> None:
    body = {"graph_id": "demo-review", "input_data": value}
    if value is None:
        assert_carried(RunGraphRequest.model_validate(body))
        return
    with pytest.raises(ValidationError, match="input_data"):
        RunGraphRequest.model_validate(body)


def test_a_graph_run_takes_deep_enough_inputs() -> None:
    deepest = {"graph_id": "demo-review", "input_data": nested(MAX_VALUE_DEPTH)}
    assert_carried(RunGraphRequest.model_validate(deepest))


@pytest.mark.parametrize(
    "source",
    [
        '{"id": "g", "nodes": [{"id": "n", "fn": "review.extract"}], "defaults": {"x": NaN}}',
        '{"id": "g", "nodes": [{"id": "n", "fn": "review.extract"}], "defaults": {"x": [-Infinity]}}',
    ],
)
def test_a_definition_refuses_defaults_it_could_not_carry_in_json(source: str) -> None:
    # /graph/create parses with pydantic, whose JSON parser reads NaN and Infinity (a lone surrogate
    # escape it refuses on its own).
    with pytest.raises(ValidationError, match="defaults"):
        GraphDefinition.model_validate_json(source)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "[.nan]"])
def test_a_definition_refuses_defaults_it_could_not_carry_in_yaml(value: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_definition(f"id: g\nnodes: [{{id: n, fn: review.extract}}]\ndefaults: {{x: {value}}}\n")


def test_the_gate_finds_what_python_reads_and_json_has_not() -> None:
    refused = {
        b'{"text": "hello there", "fields": {"zzz": NaN}}': "NaN is not JSON",
        b'{"a": Infinity}': "Infinity is not JSON",
        b'{"a": [-Infinity]}': "-Infinity is not JSON",
        b'{"a": "\\ud800"}': "not Unicode",
        b'{"\\udfff": 1}': "not Unicode",
        '{"a": "\udc80"}'.encode("utf-8", "surrogatepass"): "not Unicode",  # the bytes of a surrogate
        json.dumps(nested(MAX_DEPTH + 1)).encode(): f"deeper than {MAX_DEPTH}",
        b"[" * 100_000 + b"]" * 100_000: f"deeper than {MAX_DEPTH}",
    }
    for body, why in refused.items():
        problem = json_problem(body)
        assert problem is not None and why in problem, (body[:60], problem)
    fine = [
        b'{"text": "NaN, Infinity and \\\\ud800 as text", "n": 1e308, "m": -0.0}',
        b'{"a": "\\ud83d\\ude00"}',  # a surrogate pair: one character
        '{"a": "\ud55c\uad6d"}'.encode(),  # Hangul starts with ED too
        json.dumps(nested(MAX_DEPTH)).encode(),
        b"{'not': json}",  # the route's own refusal
        b'{"text": "\xff"}',
    ]
    for body in fine:
        assert json_problem(body) is None, body
    assert re.search("NaN", json_problem(b"NaN") or "")
