"""The `countersign` command line, run as a user runs it: in a subprocess."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

from countersign.llm.factory import build_planner
from countersign.llm.spec import LLMOptions, parse_chain
from countersign.models.enums import Role, WorkflowState
from countersign.store.audit_store import AuditStore
from countersign.store.principals import PrincipalStore
from countersign.store.sql import default_url
from countersign.tools.builtin import build_registry
from countersign.worker import build_worker
from tests.fake_llm import FakeLLM, openai_error
from tests.helpers import TEST_TRUST, eventually, start, wait_for_state


def countersign(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "countersign", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


async def test_principal_add_prints_a_working_key_last(tmp_path: Path) -> None:
    done = countersign(
        "principal",
        "add",
        "Ada",
        "--roles",
        "manager,FINANCE",
        "--tenant",
        "acme",
        "--data-dir",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("cs_") and len(key) > 40
    async with await PrincipalStore.open(default_url(tmp_path)) as store:
        principal = await store.authenticate(key)
        assert principal is not None
        assert (principal.name, principal.tenant, principal.roles) == (
            "Ada",
            "acme",
            [Role.FINANCE, Role.MANAGER],
        )
        assert await store.authenticate(key + "x") is None
    # Stored hashed: the key itself is nowhere in the database's files (its write-ahead log included).
    files = list(tmp_path.glob("audit.db*"))
    assert files and all(key.encode() not in path.read_bytes() for path in files)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--roles", "CEO"], "unknown role"),
        (["--tenant", "a b"], "tenant"),
    ],
)
def test_principal_add_refuses_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    done = countersign("principal", "add", "Bob", *args, "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COUNTERSIGN_LLM": "gpt4"}, "unknown provider 'gpt4'"),
        # A chosen vendor without its key is refused before the worker connects anywhere.
        (
            {"COUNTERSIGN_LLM": "anthropic:claude-sonnet-5-5", "ANTHROPIC_API_KEY": ""},
            "anthropic:claude-sonnet-5-5",
        ),
    ],
)
def test_worker_refuses_an_unusable_planner(tmp_path: Path, env: dict[str, str], message: str) -> None:
    # An address nothing listens on: the refusal must come first, with no traceback.
    env = {**env, "ANTHROPIC_AUTH_TOKEN": ""}
    done = countersign("worker", "--data-dir", str(tmp_path), "--temporal-address", "127.0.0.1:9", env=env)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["up", "api"])
def test_a_malformed_policy_stops_start_up_naming_the_line(tmp_path: Path, command: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('version: 1\nrules:\n  - when: "amount > 10"\n    steps: [{role: BOSS}]\n')
    env = {"COUNTERSIGN_POLICY_FILE": str(policy)}
    # A Temporal address nothing listens on: the policy must be refused before anything connects.
    done = countersign(command, "--data-dir", str(tmp_path), "--temporal-address", "127.0.0.1:9", env=env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "policy.yaml line 4" in output and "BOSS" in output, output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    "command",
    [["dlq", "list"], ["worker"], ["api", "--api-port", "9"]],
    ids=["dlq-list", "worker", "api"],
)
def test_a_temporal_server_that_is_not_there_is_one_line_and_exit_1(
    tmp_path: Path, command: list[str]
) -> None:
    # Port 9 (discard): nothing listens there. (The gateway's port is never bound: it stops before.)
    done = countersign(*command, "--data-dir", str(tmp_path), "--temporal-address", "127.0.0.1:9")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    # One line says so, last (the worker logs its planner before it connects).
    lines = done.stderr.strip().splitlines()
    assert [line for line in lines if "rror" in line] == lines[-1:], done.stderr
    assert lines[-1].startswith("error: Temporal at 127.0.0.1:9 is not reachable: Connection refused")


async def test_dlq_list_says_why_each_dead_letter_failed(
    client: Client,
    task_queue: str,
    tmp_path: Path,
    fake_llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A planner whose provider refuses its key: the request fails at once and stays open as a dead letter.
    for name, value in fake_llm.vendor_env("sk-test-revoked", "sk-test-revoked").items():
        monkeypatch.setenv(name, value)
    fake_llm.script(openai_error(401, "Incorrect API key provided"))
    options = LLMOptions(timeout_seconds=5, max_output_tokens=1000, max_repairs=0)
    registry = build_registry()
    planner = build_planner(parse_chain("openai:gpt-4.1-mini")[0], registry=registry, options=options)
    async with build_worker(
        client, task_queue=task_queue, data_dir=tmp_path, planner=planner, registry=registry, trust=TEST_TRUST
    ):
        handle = await start(client, task_queue, "Follow up with ABC Logistics about pricing")
        view = await wait_for_state(handle, WorkflowState.FAILED)
        assert view.error is not None and "HTTP 401" in view.error
        async with await AuditStore.open(default_url(tmp_path)) as audit:
            await eventually(
                lambda: audit.for_workflow(handle.id), lambda events: any(e.event == "failed" for e in events)
            )
        # In a subprocess while this test's loop runs: the list asks the server for the dead letters.
        done = await asyncio.to_thread(
            countersign,
            *("dlq", "list", "--data-dir", str(tmp_path)),
            *("--temporal-address", client.service_client.config.target_host),
            env={"COLUMNS": "400"},
        )
        # The audit log out of reach (nothing listens on port 9): the list still comes, saying so.
        unreachable = await asyncio.to_thread(
            countersign,
            *("dlq", "list", "--data-dir", str(tmp_path)),
            *("--temporal-address", client.service_client.config.target_host),
            env={
                "COLUMNS": "400",
                "COUNTERSIGN_AUDIT_DATABASE_URL": "postgresql://someone:s3cret@127.0.0.1:9/x",
            },
        )
        await handle.terminate("test over")
    assert done.returncode == 0, done.stderr
    assert "why" in done.stdout.splitlines()[1], done.stdout
    (row,) = [line for line in done.stdout.splitlines() if handle.id in line]
    assert "HTTP 401" in row and view.error.split(":")[0] in row, done.stdout
    assert unreachable.returncode == 0 and "Traceback" not in unreachable.stderr, unreachable.stderr
    (row,) = [line for line in unreachable.stdout.splitlines() if handle.id in line]
    assert "(audit log unreachable)" in row, unreachable.stdout
    assert (
        "warning: the audit log at postgresql://someone:***@127.0.0.1:9/x cannot be read"
        in unreachable.stderr
    )
    assert "s3cret" not in unreachable.stdout + unreachable.stderr
