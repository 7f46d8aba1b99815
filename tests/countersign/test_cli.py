"""The `countersign` command line, run as a user runs it: in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.enums import Role
from store.principals import PrincipalStore


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
    async with await PrincipalStore.open(tmp_path / "principals.db") as store:
        principal = await store.authenticate(key)
        assert principal is not None
        assert (principal.name, principal.tenant, principal.roles) == (
            "Ada",
            "acme",
            [Role.FINANCE, Role.MANAGER],
        )
        assert await store.authenticate(key + "x") is None
    # Stored hashed: the key itself is nowhere in the database file.
    assert key.encode() not in (tmp_path / "principals.db").read_bytes()


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
