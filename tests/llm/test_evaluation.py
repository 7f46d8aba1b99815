"""`countersign eval`: loading the labelled set, scoring planners against it, and the command itself."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import EmailStr, TypeAdapter, ValidationError
from typer.testing import CliRunner

from countersign.cli.main import app
from countersign.directory.demo import demo_records
from countersign.directory.lookups import StaticRecords
from countersign.llm.eval_cases import DEFAULT_FILE, EvalCase, EvalFileError, load_cases, select
from countersign.llm.eval_scoring import field_matches
from countersign.llm.evaluation import evaluate, provider_specs
from countersign.llm.rules import RulesPlanner
from countersign.llm.spec import SpecError
from countersign.models.enums import RequestType
from countersign.models.proposal import Finding, Plan, PlanInput, PlanProvenance, RequestFields
from countersign.models.tools import ToolSpec
from countersign.tools.builtin import build_registry
from tests.fake_llm import FakeLLM, follow_up_plan, openai_answer, openai_error

TOOLS = build_registry().specs()
DEMO = StaticRecords(demo_records())
EXPECTED_TOOL = {
    RequestType.PROCUREMENT: "create_purchase_order",
    RequestType.LEAVE: "record_leave",
    RequestType.SUPPORT: "open_support_ticket",
}


def write_cases(path: Path, *cases: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return path


def a_plan(rtype: RequestType, tool: str, *, provenance: PlanProvenance | None = None, **fields: Any) -> Plan:
    return Plan(
        request_type=rtype,
        fields=RequestFields(**fields),
        summary="s",
        tool=tool,
        args={},
        confidence=0.5,
        rationale="r",
        planner="fake",
        provenance=provenance,
    )


class ScriptedPlanner:
    """Answers from a script keyed by request text; raises when the script holds an exception."""

    name = "fake"

    def __init__(self, answers: dict[str, Plan | Exception]) -> None:
        self.answers = answers

    async def plan(self, request: PlanInput, tools: list[ToolSpec], directory: object = None) -> Plan:
        answer = self.answers[request.request.text]
        if isinstance(answer, Exception):
            raise answer
        return answer


TINY = [
    {
        "id": "p1",
        "text": "buy 40 laptops for $52,000",
        "type": "PROCUREMENT",
        "tool": "create_purchase_order",
        "fields": {"amount": 52000, "currency": "USD", "quantity": 40, "counterparty": "Dell Inc"},
        "tags": ["money"],
    },
    {
        "id": "l1",
        "text": "a week off please",
        "type": "LEAVE",
        "tool": "record_leave",
        "fields": {"days": 5, "start_date": None},
    },
    {
        "id": "s1",
        "text": "site down, P1",
        "type": "SUPPORT",
        "tool": "open_support_ticket",
        "fields": {"severity": 5},
    },
    {
        "id": "g1",
        "text": "mail ann@example.com about lunch",
        "type": "GENERAL",
        "tool": "send_email",
        "fields": {"email": "ANN@example.com"},
        "tags": ["money"],
    },
]


async def test_scores_exactly_what_a_fake_planner_got_right(tmp_path: Path) -> None:
    cases = load_cases(write_cases(tmp_path / "tiny.jsonl", *TINY))
    spent = PlanProvenance(provider="fake", input_tokens=100, output_tokens=20)
    planner = ScriptedPlanner(
        {
            # type and tool right; amount within 0.5% (right), "usd" right, quantity wrong,
            # "Dell" is contained in "Dell Inc" (right): 3 of 4 fields
            "buy 40 laptops for $52,000": a_plan(
                RequestType.PROCUREMENT,
                "create_purchase_order",
                amount=52_200,
                currency="usd",
                quantity=4,
                counterparty="Dell",
                provenance=spent,
            ),
            # type right, tool wrong; days right, a start date invented where the label says none
            "a week off please": a_plan(
                RequestType.LEAVE, "create_task", days=5.0, start_date="2026-01-01", provenance=spent
            ),
            # type and tool wrong; severity right
            "site down, P1": a_plan(RequestType.GENERAL, "create_task", severity=5),
            # everything right; email compared case-insensitively
            "mail ann@example.com about lunch": a_plan(
                RequestType.GENERAL, "send_email", email="ann@EXAMPLE.com"
            ),
        }
    )
    report = await evaluate(planner, cases, TOOLS)

    assert report.provider == "fake"
    assert report.cases == 4
    assert (report.request_type.correct, report.request_type.accuracy) == (3, 0.75)
    assert (report.tool.correct, report.tool.accuracy) == (2, 0.5)
    assert (report.fields.correct, report.fields.total) == (6, 8)
    assert report.fields.accuracy == 0.75
    per_field = {name: (s.correct, s.total) for name, s in report.per_field.items()}
    assert per_field == {
        "amount": (1, 1),
        "counterparty": (1, 1),
        "currency": (1, 1),
        "days": (1, 1),
        "email": (1, 1),
        "quantity": (0, 1),
        "severity": (1, 1),
        "start_date": (0, 1),
    }
    assert [(m.id, m.expected, m.got) for m in report.misclassified] == [
        ("s1", RequestType.SUPPORT, RequestType.GENERAL)
    ]
    assert [m.id for m in report.wrong_tool] == ["l1", "s1"]
    assert {(m.id, m.field) for m in report.field_misses} == {("p1", "quantity"), ("l1", "start_date")}
    assert report.errors == [] and report.triage == 0
    assert report.tokens is not None
    assert (report.tokens.input, report.tokens.output, report.tokens.total) == (200, 40, 240)
    assert report.latency.mean_ms is not None and report.latency.p95_ms is not None


async def test_a_raising_planner_is_wrong_on_every_check_and_reported(tmp_path: Path) -> None:
    cases = load_cases(write_cases(tmp_path / "tiny.jsonl", *TINY))
    right = {
        "buy 40 laptops for $52,000": a_plan(
            RequestType.PROCUREMENT,
            "create_purchase_order",
            amount=52_000,
            currency="USD",
            quantity=40,
            counterparty="Dell Inc",
        ),
        "a week off please": a_plan(RequestType.LEAVE, "record_leave", days=5),
        "site down, P1": RuntimeError("provider unavailable"),
        "mail ann@example.com about lunch": TimeoutError(),
    }
    report = await evaluate(ScriptedPlanner(right), cases, TOOLS, concurrency=2)

    assert report.request_type.correct == 2 and report.tool.correct == 2
    # the two failed cases carry 2 field labels; both count as wrong
    assert (report.fields.correct, report.fields.total) == (6, 8)
    assert [(e.id, e.message) for e in report.errors] == [
        ("s1", "RuntimeError: provider unavailable"),
        ("g1", "TimeoutError"),  # the planner's own timeout, not the per-case limit
    ]
    assert report.misclassified == []  # errors are listed as errors, not as misclassified
    assert report.tokens is None


async def test_a_hung_planner_is_cut_off_per_case(tmp_path: Path) -> None:
    class Hung:
        name = "hung"

        async def plan(self, request: PlanInput, tools: list[ToolSpec], directory: object = None) -> Plan:
            await asyncio.sleep(30)
            raise AssertionError("not reached")

    cases = load_cases(write_cases(tmp_path / "one.jsonl", TINY[0]))
    report = await evaluate(Hung(), cases, TOOLS, limit_seconds=0.05)
    assert [e.id for e in report.errors] == ["p1"]
    assert "no plan within" in report.errors[0].message


async def test_plans_needing_triage_are_counted(tmp_path: Path) -> None:
    cases = load_cases(write_cases(tmp_path / "one.jsonl", TINY[1]))
    plan = a_plan(RequestType.LEAVE, "record_leave", days=5)
    plan.planning_findings = [Finding(code="unparseable", message="not JSON")]
    report = await evaluate(ScriptedPlanner({"a week off please": plan}), cases, TOOLS)
    assert report.triage == 1
    assert report.request_type.correct == 1  # the best-effort reading is still scored


async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    class Counting:
        name = "counting"
        running = peak = 0

        async def plan(self, request: PlanInput, tools: list[ToolSpec], directory: object = None) -> Plan:
            self.running += 1
            self.peak = max(self.peak, self.running)
            await asyncio.sleep(0.01)
            self.running -= 1
            return a_plan(RequestType.GENERAL, "create_task")

    many = [{**TINY[2], "id": f"s{i}"} for i in range(10)]
    planner = Counting()
    cases = load_cases(write_cases(tmp_path / "many.jsonl", *many))
    report = await evaluate(planner, cases, TOOLS, concurrency=3)
    assert report.cases == 10
    assert planner.peak == 3


@pytest.mark.parametrize(
    ("name", "expected", "actual", "ok"),
    [
        ("amount", 52_000, 52_000.0, True),
        ("amount", 52_000, 52_250, True),  # within 0.5%
        ("amount", 52_000, 52_300, False),
        ("amount", 52_000, None, False),
        ("amount", None, None, True),
        ("amount", None, 1.0, False),
        ("days", 0.5, 0.5, True),
        ("severity", 5, 4, False),
        ("currency", "EUR", "eur", True),
        ("item", "standing  desks", " Standing desks", True),
        ("counterparty", "Acme Corp", "acme", True),
        ("counterparty", "Acme", "ACME Corp Ltd", True),
        ("counterparty", "Acme Corp", "Globex", False),
        ("email", "a@b.com", "", False),
        ("email", None, "  ", True),  # a blank string is an empty field
        ("topic", "pricing", "pricing and terms", False),  # containment is for counterparty only
    ],
)
def test_field_comparison(name: str, expected: Any, actual: Any, ok: bool) -> None:
    assert field_matches(name, expected, actual) is ok


# --- the file ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"id": "x", "text": "hello there", "type": "TRAVEL", "tool": "t"}', "line 2: type"),
        ('{"id": "x", "text": "hello there", "type": "GENERAL"}', "line 2: tool: Field required"),
        (
            '{"id": "x", "text": "hello", "type": "GENERAL", "tool": "t", "fields": {"colour": "red"}}',
            "line 2: fields: Value error, colour: Extra inputs are not permitted",
        ),
        (
            '{"id": "x", "text": "hello", "type": "SUPPORT", "tool": "t", "fields": {"severity": 9}}',
            "line 2: fields: Value error, severity",
        ),
        ('{"id": "p1", "text": "again", "type": "GENERAL", "tool": "t"}', "line 2: duplicate id 'p1'"),
    ],
)
def test_a_bad_line_is_an_error_naming_its_number(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(TINY[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(EvalFileError, match=message) as raised:
        load_cases(path)
    assert str(path) in str(raised.value)


def test_blank_lines_are_skipped_but_an_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n" + json.dumps(TINY[0]) + "\n\n", encoding="utf-8")
    assert [c.id for c in load_cases(path)] == ["p1"]
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(EvalFileError, match="no cases"):
        load_cases(path)


def test_tags_select_cases(tmp_path: Path) -> None:
    cases = load_cases(write_cases(tmp_path / "tiny.jsonl", *TINY))
    assert [c.id for c in select(cases, ["money"])] == ["p1", "g1"]
    assert len(select(cases, [])) == 4


# --- the committed set ------------------------------------------------------------------------


def _is_deliverable(address: Any) -> bool:
    try:
        TypeAdapter(EmailStr).validate_python(address)
    except ValidationError:
        return False
    return True


def test_the_committed_set_is_large_balanced_and_consistent() -> None:
    cases = load_cases(DEFAULT_FILE)
    assert len(cases) >= 60
    per_type = {t: sum(c.type is t for c in cases) for t in RequestType}
    assert min(per_type.values()) >= len(cases) // 5, per_type  # roughly even, none neglected
    for case in cases:
        if case.type is RequestType.GENERAL:
            email = case.fields.get("email")
            expected = "send_email" if email is not None and _is_deliverable(email) else "create_task"
        else:
            expected = EXPECTED_TOOL[case.type]
        assert case.tool == expected, case.id
    tags = {t for c in cases for t in c.tags}
    assert {"adversarial", "injection", "ambiguous", "money-not-procurement", "leave-word-not-leave"} <= tags


def test_every_general_case_with_an_address_in_its_text_labels_it() -> None:
    """Otherwise the tool rule above could be satisfied by forgetting to label the address."""
    for case in load_cases(DEFAULT_FILE):
        if case.type is RequestType.GENERAL and "@" in case.text:
            assert case.fields.get("email"), case.id


async def test_rules_planner_quality_bar_on_the_committed_set() -> None:
    """A regression guard: the offline planner, with the demo directory the set's labels assume, must
    keep classifying nine requests in ten right and choosing the right tool for nineteen in twenty."""
    report = await evaluate(RulesPlanner(), load_cases(DEFAULT_FILE), TOOLS, directory=DEMO)
    assert report.errors == []
    assert report.request_type.accuracy is not None and report.request_type.accuracy >= 0.9, [
        m.id for m in report.misclassified
    ]
    assert report.tool.accuracy is not None and report.tool.accuracy >= 0.95, [
        m.id for m in report.wrong_tool
    ]


async def test_the_directory_cases_need_the_directory() -> None:
    """The cases tagged `directory` are what the directory is for: without it the rules planner gets
    most of their tools wrong, with it all of them right."""
    cases = select(load_cases(DEFAULT_FILE), ["directory"])
    without = await evaluate(RulesPlanner(), cases, TOOLS)
    with_it = await evaluate(RulesPlanner(), cases, TOOLS, directory=DEMO)
    assert with_it.tool.accuracy == 1.0, [m.id for m in with_it.wrong_tool]
    assert without.tool.accuracy is not None and without.tool.accuracy < 0.5
    assert with_it.fields.accuracy is not None and without.fields.accuracy is not None
    assert with_it.fields.accuracy > without.fields.accuracy


# --- providers and the command ----------------------------------------------------------------


def test_default_providers_are_rules_plus_the_configured_first_choice() -> None:
    assert [s.label for s in provider_specs([], "rules")] == ["rules"]
    chain = "anthropic:claude-sonnet-5-5,rules"
    assert [s.label for s in provider_specs([], chain)] == ["rules", "anthropic:claude-sonnet-5-5"]
    explicit = provider_specs(["openai:gpt-4.1-mini", "rules", "rules"], chain)
    assert [s.label for s in explicit] == ["openai:gpt-4.1-mini", "rules"]
    with pytest.raises(SpecError, match="one provider per --provider"):
        provider_specs(["openai:gpt-4.1-mini,rules"], None)


def test_cli_writes_a_json_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["eval", "--provider", "rules", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "request type" in result.stdout and "rules" in result.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert {"file", "tags", "cases", "providers"} <= report.keys()
    (rules,) = report["providers"]
    assert {
        "provider",
        "cases",
        "request_type",
        "fields",
        "per_field",
        "tool",
        "errors",
        "triage",
        "latency",
        "tokens",
        "misclassified",
    } <= rules.keys()
    assert rules["provider"] == "rules"
    assert rules["cases"] == report["cases"] == len(load_cases(DEFAULT_FILE))
    assert 0.9 <= rules["request_type"]["accuracy"] <= 1


def test_cli_json_to_stdout_with_a_tag_and_a_custom_file(tmp_path: Path) -> None:
    path = write_cases(tmp_path / "tiny.jsonl", *TINY)
    result = CliRunner().invoke(
        app, ["eval", "--provider", "rules", "--file", str(path), "--tag", "money", "--json", "-"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert report["cases"] == 2 and report["tags"] == ["money"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "gpt4"], "unknown provider"),
        (["--provider", "rules,openai:gpt-4.1-mini"], "one provider per --provider"),
        (["--provider", "rules", "--file", "/nonexistent/cases.jsonl"], "cannot read"),
        (["--provider", "rules", "--tag", "no-such-tag"], "no case has tag"),
    ],
)
def test_cli_refuses_bad_input_with_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["eval", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an uncaught error


def test_cli_names_the_bad_line_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps(TINY[0]) + "\n\n{oops\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", "--provider", "rules", "--file", str(path)])
    assert result.exit_code == 2
    assert "line 3: not valid JSON" in result.stderr


def test_eval_case_model_refuses_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        EvalCase.model_validate({"id": "x", "text": "hello", "type": "GENERAL", "tool": "t", "label": 1})


def test_cli_evaluates_a_model_provider_through_its_sdk(
    tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fake_llm.vendor_env("sk-eval-test-0123456789", "unused").items():
        monkeypatch.setenv(name, value)
    case = {
        "id": "gen-x",
        "text": "Follow up with ABC Logistics (sales@abclogistics.com) about pricing",
        "type": "GENERAL",
        "tool": "send_email",
        "fields": {"email": "sales@abclogistics.com", "counterparty": "ABC Logistics"},
    }
    path = write_cases(tmp_path / "two.jsonl", case, {**case, "id": "gen-y"})
    # One case answers well; the other meets a 401, which is an error for that case, not a crash.
    fake_llm.script(openai_answer(follow_up_plan()), openai_error(401, "bad key"))
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--provider",
            "openai:gpt-4.1-mini",
            "--file",
            str(path),
            "--concurrency",
            "1",
            "--json",
            "-",
        ],
    )
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)["providers"]
    assert report["provider"] == "openai:gpt-4.1-mini"
    assert report["request_type"]["correct"] == 1 and report["request_type"]["total"] == 2
    assert len(report["errors"]) == 1 and "HTTP 401" in json.dumps(report["errors"])
    assert report["tokens"]["input"] == 120 and report["tokens"]["output"] == 80
