"""Policy files: the shipped default loads, and every mistake is reported with the line it is on."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from countersign.cli.main import app
from countersign.config.policy_file import DEFAULT_POLICY_FILE, PolicyFileError, load_policy
from countersign.models.enums import Role
from countersign.models.policy import OnDeadline, resolve_timing
from countersign.workflows.policy import auto_approving_rule

GOOD = """\
version: 2
rules:
  - name: big spend
    when: "type == 'PROCUREMENT' and amount > 500"
    steps:
      - {role: FINANCE, quorum: 2, sla: 2h, deadline: 1d}
  - when: true
    steps: [{role: MANAGER}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    """Each reported problem, with the `FILE ` prefix taken off so cases read as `line N: ...`."""
    path = write(tmp_path, text)
    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)
    lines = str(caught.value).splitlines()
    assert lines == caught.value.problems
    assert all(line.startswith(f"{path} ") for line in lines), lines
    return [line.removeprefix(f"{path} ") for line in lines]


def test_the_shipped_default_loads_with_its_documented_shape() -> None:
    assert DEFAULT_POLICY_FILE.is_file()
    policy = load_policy()
    assert policy == load_policy(DEFAULT_POLICY_FILE)
    assert policy.version == 1
    assert (policy.defaults.sla, policy.defaults.reminder_at, policy.defaults.deadline) == (
        8 * 3600,
        6 * 3600,
        72 * 3600,
    )
    assert policy.defaults.on_deadline == OnDeadline.EXPIRE
    assert policy.confidence_threshold == 0.6
    assert policy.extra_steps == []
    assert [rule.name for rule in policy.rules] == [
        "large procurement",
        "procurement over budget",
        "long leave",
        "severe support issue",
        "everything else",
    ]
    assert [[step.role for step in rule.steps] for rule in policy.rules] == [
        [Role.MANAGER, Role.FINANCE, Role.DIRECTOR],
        [Role.MANAGER, Role.FINANCE],
        [Role.MANAGER, Role.HR],
        [Role.SUPPORT_L2, Role.MANAGER],
        [Role.MANAGER],
    ]
    assert policy.rules[0].steps[2].escalate_to == Role.ADMIN
    support = policy.rules[3].steps[0]
    assert support.sla == 1800
    # The default 6h reminder would come after its 30m SLA, so it is moved to three quarters of it.
    assert resolve_timing(support, policy.defaults).reminder_seconds == 1350
    assert policy.rules[4].when == "true"


def test_a_good_file_loads(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.version == 2
    step = policy.rules[0].steps[0]
    assert (step.role, step.quorum, step.sla, step.deadline) == (Role.FINANCE, 2, 7200, 86400)
    assert policy.rules[1].when == "true"  # YAML's boolean true, taken as the expression


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            'version: 1\nrules:\n  - name: a\n    when: "true\n',
            "line 5: invalid YAML: while scanning a quoted scalar: found unexpected end of stream",
            id="unterminated quote",
        ),
        pytest.param(
            "rules:\n  - when: true\n    steps: [{role: HR}\n  - when: false\n",
            "line 4: invalid YAML: while parsing a flow sequence",
            id="unclosed bracket",
        ),
        pytest.param(
            "rules:\n  - when: true\n steps: []\n",
            "line 3: invalid YAML: while parsing a block mapping",
            id="bad indentation",
        ),
        pytest.param(
            "# comment\n\nrules: !!python/object/apply:os.system [ls]\n",
            "line 3: invalid YAML: could not determine a constructor for the tag",
            id="python tag refused",
        ),
        pytest.param(
            "version: 1\nrules: 'a\x01'\n",
            "line 2: invalid YAML: special characters are not allowed",
            id="control character",
        ),
    ],
)
def test_yaml_syntax_errors_give_the_yaml_line(tmp_path: Path, text: str, expected: str) -> None:
    [problem] = problems(tmp_path, text)
    assert problem.startswith(expected), problem


def test_unknown_role(tmp_path: Path) -> None:
    text = GOOD.replace("- {role: FINANCE, quorum: 2, sla: 2h, deadline: 1d}", "- role: BOSS")
    assert problems(tmp_path, text) == [
        "line 6: rules[0].steps[0].role: Input should be 'MANAGER', 'FINANCE', 'DIRECTOR', 'HR', "
        "'SUPPORT_L2', 'ADMIN', 'AUDITOR' or 'OPERATOR' (got 'BOSS')"
    ]


def test_bad_duration(tmp_path: Path) -> None:
    text = "version: 1\ndefaults:\n  sla: 8 hours\n" + GOOD.removeprefix("version: 2\n")
    assert problems(tmp_path, text) == [
        "line 3: defaults.sla: '8 hours' is not a duration: use a number and a unit, like 10s, 30m, 8h or 3d"
    ]


def test_unknown_name_in_expression(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, GOOD.replace("when: true", 'when: "foo > 3"'))
    assert problem.startswith("line 7: rules[1].when: unknown name 'foo' in 'foo > 3' (known: amount,")


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os')", "unknown name '__import__'"),
        ("type.__class__", "is not allowed"),
        ("open('x')", "unknown name 'open'"),
    ],
)
def test_unsafe_expression(tmp_path: Path, expression: str, reason: str) -> None:
    [problem] = problems(tmp_path, GOOD.replace("when: true", f'when: "{expression}"'))
    assert problem.startswith("line 7: rules[1].when: "), problem
    assert reason in problem


def test_reminder_after_sla_points_at_the_step(tmp_path: Path) -> None:
    # Checked by a model-level validator, which names the step in its message rather than in `loc`.
    text = GOOD.replace("sla: 2h, deadline: 1d}", "sla: 2h, reminder_at: 3h}")
    assert problems(tmp_path, text) == ["line 6: rules[0].steps[0]: reminder_at must come before sla"]


def test_sla_after_deadline_and_escalate_without_role(tmp_path: Path) -> None:
    text = GOOD.replace("deadline: 1d}", "deadline: 1h}")
    assert problems(tmp_path, text) == ["line 6: rules[0].steps[0]: sla must not come after deadline"]
    text = GOOD.replace("steps: [{role: MANAGER}]", "steps: [{role: MANAGER, on_deadline: escalate}]")
    assert problems(tmp_path, text) == [
        "line 8: rules[1].steps[0]: on_deadline escalate needs an escalate_to role"
    ]


def test_missing_rules_points_at_the_top_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, "# my policy\n\nversion: 1\nconfidence_threshold: 0.5\n") == [
        "line 3: rules: Field required"
    ]


def test_missing_step_field_points_at_its_mapping(tmp_path: Path) -> None:
    text = GOOD.replace("- {role: FINANCE, quorum: 2, sla: 2h, deadline: 1d}", "- {quorum: 2}")
    assert problems(tmp_path, text) == [
        "line 6: rules[0].steps[0]: a step names exactly one of `role` or `any_of` (it has neither)"
    ]


def test_extra_unknown_key(tmp_path: Path) -> None:
    text = GOOD.replace("    steps: [{role: MANAGER}]", "    steps: [{role: MANAGER}]\n    priority: high")
    assert problems(tmp_path, text) == [
        "line 9: rules[1].priority: Extra inputs are not permitted (got 'high')"
    ]


def test_boolean_key_is_explained(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, GOOD + "on: 1\n")
    assert problem.startswith("line 1: Keys should be strings (got True); YAML reads unquoted on/off/yes/no")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "# a list\n- when: true\n",
            "line 2: the policy must be a mapping (version, rules, ...), got a list",
        ),
        ("just text\n", "line 1: the policy must be a mapping (version, rules, ...), got a str"),
        ("# nothing yet\n", "line 1: the policy must be a mapping (version, rules, ...), got an empty file"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


def test_every_error_is_reported_in_file_order(tmp_path: Path) -> None:
    text = """\
rules:
  - name: a
    when: "foo > 3"
    steps:
      - role: BOSS
      - {role: MANAGER, sla: 8 hours}
  - when: true
    steps: []
    bogus: 1
defaults: {deadline: soon}
"""
    found = problems(tmp_path, text)
    assert [problem.split(": ")[0] for problem in found] == [
        "line 3",
        "line 5",
        "line 6",
        "line 8",
        "line 9",
        "line 10",
    ]
    assert [problem.split(": ")[1] for problem in found] == [
        "rules[0].when",
        "rules[0].steps[0].role",
        "rules[0].steps[1].sla",
        "rules[1].steps",
        "rules[1].bogus",
        "defaults.deadline",
    ]


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    for path in (tmp_path / "absent.yaml", tmp_path):
        with pytest.raises(PolicyFileError, match=r"cannot read the policy file") as caught:
            load_policy(path)
        assert str(caught.value).startswith(f"{path}: ")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00rules")
    with pytest.raises(PolicyFileError, match=r"binary\.yaml: cannot read the policy file"):
        load_policy(binary)


def test_policy_check_command_summarises_a_good_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["policy-check", str(write(tmp_path, GOOD))])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "version 2, 2 rules, 0 extra steps" in out
    assert "big spend when: type == 'PROCUREMENT' and amount > 500" in out
    assert "FINANCE x2 2h/1d" in out
    assert "MANAGER x1 8h/3d" in out


def test_policy_check_command_defaults_to_the_shipped_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COUNTERSIGN_POLICY_FILE", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    result = CliRunner().invoke(app, ["policy-check"])
    assert result.exit_code == 0, result.output
    assert str(DEFAULT_POLICY_FILE) in result.stdout
    assert "DIRECTOR x1 8h/3d, escalates to ADMIN" in result.stdout
    assert "SUPPORT_L2 x1 30m/3d" in result.stdout


def test_policy_check_command_reports_errors_by_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, GOOD.replace("role: FINANCE", "role: '[bold]BOSS'").replace("when: true", "when: x")
    )
    result = CliRunner().invoke(app, ["policy-check", str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {path} line 6: rules[0].steps[0].role: Input should be 'MANAGER', 'FINANCE', 'DIRECTOR', "
        "'HR', 'SUPPORT_L2', 'ADMIN', 'AUDITOR' or 'OPERATOR' (got '[bold]BOSS')",
        f"error: {path} line 7: rules[1].when: unknown name 'x' in 'x' (known: amount, amount_base, "
        "currency, days, over_budget, quantity, recipients, risk, severity, side_effect, tool, type, "
        "unknown_currency, unknown_recipient, unknown_vendor)",
    ]


def test_only_the_actions_facts_choose_the_chain(tmp_path: Path) -> None:
    """The planner's labels never choose approvers, and the model's confidence may add a step (extra
    steps) but never choose a shorter chain: a policy naming them in its rules is refused, by line.
    Readers (AUDITOR, OPERATOR) cannot be asked to approve."""
    text = """\
version: 1
rules:
  - when: "type == 'PROCUREMENT' and amount > 10000 and confidence < 0.9"
    steps: [{role: MANAGER}, {role: FINANCE}]
  - when: "counterparty == 'ACME'"
    steps: [{role: AUDITOR}]
  - when: "true"
    steps: [{role: MANAGER}]
extra_steps:
  - when: "confidence < 0.6 and 'ceo@example.com' in recipients"
    step: {role: DIRECTOR}
"""
    found = problems(tmp_path, text)
    assert [problem.split(": ")[:2] for problem in found] == [
        ["line 3", "rules[0].when"],
        ["line 5", "rules[1].when"],
        ["line 6", "rules[1].steps[0].role"],
    ]
    assert "'confidence' is the model's own figure: it may add a step (extra_steps)" in found[0]
    assert "'counterparty' is what the planner read from the request, which never chooses" in found[1]
    assert "AUDITOR reads and never decides" in found[2]
    fixed = text.replace(" and confidence < 0.9", "")
    fixed = fixed.replace("counterparty == 'ACME'", "tool == 'send_email'")
    policy = load_policy(write(tmp_path, fixed.replace("AUDITOR", "ADMIN")))
    assert "confidence" in policy.extra_steps[0].when  # an extra step may add on low confidence


ANY_OF = """\
version: 3
rules:
  - name: big spend
    when: "amount > 500"
    steps:
      - {any_of: [FINANCE, DIRECTOR, ADMIN], quorum: 2, sla: 2h}
      - role: MANAGER
  - when: true
    steps: [{role: MANAGER}]
"""


def test_a_step_may_name_several_roles(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, ANY_OF))
    several, one = policy.rules[0].steps
    assert (several.role, several.any_of, several.quorum) == (
        None,
        [Role.FINANCE, Role.DIRECTOR, Role.ADMIN],
        2,
    )
    assert several.roles == [Role.FINANCE, Role.DIRECTOR, Role.ADMIN]
    assert (one.role, one.any_of, one.roles) == (Role.MANAGER, None, [Role.MANAGER])
    # Frozen into a workflow's input and decoded again, the policy is the same.
    assert type(policy).model_validate(policy.model_dump(mode="json")) == policy


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            "{role: FINANCE, any_of: [FINANCE, DIRECTOR]}",
            "line 6: rules[0].steps[0]: a step names exactly one of `role` or `any_of` (it has both)",
        ),
        (
            "{any_of: [FINANCE, AUDITOR]}",
            "line 6: rules[0].steps[0].any_of: AUDITOR reads and never decides: "
            "it cannot be an approval step's role",
        ),
        (
            "{any_of: [FINANCE, DIRECTOR, FINANCE]}",
            "line 6: rules[0].steps[0].any_of: any_of names FINANCE more than once",
        ),
        (
            "{any_of: [FINANCE]}",
            "line 6: rules[0].steps[0].any_of: any_of needs two or more roles; "
            "a step of one role is written `role: ...`",
        ),
        (
            "{any_of: []}",
            "line 6: rules[0].steps[0].any_of: any_of needs two or more roles; "
            "a step of one role is written `role: ...`",
        ),
        (
            "{any_of: [FINANCE, BOSS]}",
            "line 6: rules[0].steps[0].any_of[1]: Input should be 'MANAGER', 'FINANCE', 'DIRECTOR', "
            "'HR', 'SUPPORT_L2', 'ADMIN', 'AUDITOR' or 'OPERATOR' (got 'BOSS')",
        ),
        (
            "{any_of: [FINANCE, DIRECTOR], quorum: 21}",
            "line 6: rules[0].steps[0].quorum: Input should be less than or equal to 20 (got 21)",
        ),
    ],
)
def test_several_roles_mistakes_are_reported_by_line(tmp_path: Path, step: str, expected: str) -> None:
    text = ANY_OF.replace("{any_of: [FINANCE, DIRECTOR, ADMIN], quorum: 2, sla: 2h}", step)
    assert problems(tmp_path, text) == [expected]


def test_an_any_of_step_as_a_block_points_at_its_own_lines(tmp_path: Path) -> None:
    text = ANY_OF.replace(
        "      - {any_of: [FINANCE, DIRECTOR, ADMIN], quorum: 2, sla: 2h}\n",
        "      - quorum: 2\n        any_of:\n          - FINANCE\n          - OPERATOR\n",
    )
    assert problems(tmp_path, text) == [
        "line 8: rules[0].steps[0].any_of: OPERATOR reads and never decides: "
        "it cannot be an approval step's role"
    ]


def test_policy_check_prints_a_step_of_several_roles(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["policy-check", str(write(tmp_path, ANY_OF))])
    assert result.exit_code == 0, result.output
    assert "   2 of FINANCE | DIRECTOR | ADMIN 2h/3d\n" in result.stdout
    assert "   MANAGER x1 8h/3d\n" in result.stdout


AUTO = """\
version: auto
rules:
  - name: routine
    when: "risk == 'LOW'"
    auto_approve: true
  - name: anything internal
    when: "side_effect == 'INTERNAL'"
    auto_approve: true
    steps: [{role: MANAGER}]
  - name: everything else
    when: "true"
    steps: [{role: MANAGER}]
extra_steps:
  - when: "confidence < 0.6"
    step: {role: DIRECTOR}
"""


def test_auto_approve_rules_load_and_say_which_rule_approves(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, AUTO))
    low = {"tool": "create_task", "side_effect": "INTERNAL", "risk": "LOW", "type": "GENERAL"}
    assert auto_approving_rule(low, policy, confidence=1.0) == "routine"
    # An extra step that holds (a low confidence) asks a human after all.
    assert auto_approving_rule(low, policy, confidence=0.3) is None
    external = {"tool": "send_email", "side_effect": "EXTERNAL", "risk": "MEDIUM", "type": "GENERAL"}
    assert auto_approving_rule(external, policy, confidence=1.0) is None


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            '  - when: "true"\n    auto_approve: true\n    name: all\n',
            "rules[0]: the last rule needs steps (it is the fallback)",
        ),
        ('  - when: "true"\n    auto_approve: true\n', "an auto_approve rule needs a name"),
        ('  - when: "true"\n    name: none\n', "a rule needs steps (or `auto_approve: true`)"),
    ],
    ids=["last-rule-auto", "auto-unnamed", "no-steps"],
)
def test_auto_approve_mistakes_are_reported(tmp_path: Path, rules: str, expected: str) -> None:
    found = problems(tmp_path, f"version: 1\nrules:\n{rules}")
    assert any(expected in problem for problem in found), found


def test_policy_check_warns_of_an_auto_rule_that_can_approve_a_high_risk_tool(tmp_path: Path) -> None:
    risky = AUTO.replace("risk == 'LOW'", "amount < 100000")
    result = CliRunner().invoke(app, ["policy-check", str(write(tmp_path, risky))])
    assert result.exit_code == 0, result.output
    assert "routine when: amount < 100000 auto-approves" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    # The built-in HIGH-risk tools with an amount under the bound, and any tool declared later.
    assert (
        "warning: auto_approve rule 'routine' can approve create_purchase_order (HIGH risk) with no human"
        in (warnings)
    )
    assert any("'routine' can approve <a declared tool>" in w for w in warnings), warnings
    # `side_effect == 'INTERNAL'` reaches a declared INTERNAL tool at HIGH risk too.
    assert any("'anything internal' can approve <a declared tool>" in w for w in warnings), warnings
    # A policy whose auto rule names only LOW risk is not warned about (bar a declared tool, LOW or not).
    calm = CliRunner().invoke(
        app, ["policy-check", str(write(tmp_path, AUTO.replace("anything internal", "x")))]
    )
    assert not [w for w in calm.stderr.splitlines() if "'routine'" in w], calm.stderr
