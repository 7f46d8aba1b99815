"""The Dockerfile and .dockerignore, read without Docker: pinned multi-stage build with uv exactly from
uv.lock, a non-root runtime, a command the CLI has, and a build context with what the COPYs need."""

import json
import re
import tomllib
from dataclasses import dataclass
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.deploy import DOCKERFILE, DOCKERIGNORE, REPO, cli_commands, services


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM it follows


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    found: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        found.append(Instruction(keyword, " ".join(arguments.split()), stage))
    return found


def stages() -> list[tuple[str, str]]:
    """(image, stage name) of each FROM."""
    found = []
    for instruction in instructions():
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+ )?(\S+) AS (\S+)", instruction.arguments, re.I)
            assert match, f"FROM {instruction.arguments}: every stage is named"
            found.append((match[1], match[2]))
    return found


def final(keyword: str) -> list[str]:
    """Arguments of `keyword` in the last stage."""
    last = len(stages()) - 1
    return [i.arguments for i in instructions() if i.keyword == keyword and i.stage == last]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def wheel_packages() -> list[str]:
    included = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert isinstance(included, list)
    return [str(path) for path in included]


def test_stages_use_pinned_images() -> None:
    found = stages()
    assert len(found) >= 3, "uv, a build stage and a runtime stage"
    names = [name for _, name in found]
    assert len(set(names)) == len(names)
    for image, name in found:
        assert "$" not in image, f"stage {name}: the version is written here, not in an ARG"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag and tag != "latest", f"stage {name}: {image} is not pinned"
        assert re.match(r"v?\d+\.\d+(\.\d+)?", tag), f"stage {name}: {image} pins no version"


def test_uv_comes_from_a_pinned_image() -> None:
    uv_images = [image for image, _ in stages() if image.startswith("ghcr.io/astral-sh/uv:")]
    assert len(uv_images) == 1 and re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", uv_images[0])
    copies = [i.arguments for i in instructions() if i.keyword == "COPY" and "/uv " in i.arguments]
    assert copies and all(re.match(r"--from=\S+ /uv ", copy) for copy in copies)


def test_the_runtime_is_a_slim_python_like_the_build() -> None:
    images = [image for image, _ in stages()]
    runtime, build = images[-1], images[-2]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", runtime), runtime
    # The virtual environment is copied across: its interpreter must be the same Python at the same path.
    assert build == runtime
    assert pyproject()["project"]["requires-python"] == ">=3.11"


def test_dependencies_are_exactly_uv_lock() -> None:
    runs = [i.arguments for i in instructions() if i.keyword == "RUN"]
    syncs = [run for run in runs if "uv sync" in run]
    assert syncs, "the environment is made by uv sync"
    for run in syncs:
        assert "--frozen" in run.split() and "--no-dev" in run.split(), run
    for run in runs:
        assert not re.search(r"\bpip install\b|\buv (pip|add|lock)\b", run), f"not from uv.lock: {run}"
    copies = [i.arguments for i in instructions() if i.keyword == "COPY"]
    assert "pyproject.toml uv.lock ./" in copies


def test_the_build_installs_every_package_of_the_wheel() -> None:
    build = len(stages()) - 2
    copied = {
        i.arguments.split()[0]
        for i in instructions()
        if i.keyword == "COPY" and i.stage == build and not i.arguments.startswith("--")
    }
    missing = set(wheel_packages()) - copied
    assert not missing, f"pyproject.toml packages the Dockerfile does not copy: {sorted(missing)}"
    assert pyproject()["project"]["readme"] in copied


def test_the_runtime_stage_holds_the_environment_not_the_sources() -> None:
    copies = final("COPY")
    environments = [copy for copy in copies if copy.startswith("--from=")]
    assert environments == ["--from=build /app/.venv /app/.venv"]
    env = " ".join(final("ENV"))
    assert "PATH=/app/.venv/bin:$PATH" in env
    build = len(stages()) - 2
    builder_env = " ".join(i.arguments for i in instructions() if i.keyword == "ENV" and i.stage == build)
    assert "UV_PROJECT_ENVIRONMENT=/app/.venv" in builder_env
    for copy in copies:
        source = copy.split()[0]
        assert source.startswith("--from=") or source.startswith("deploy/"), f"COPY {copy} in the runtime"


def test_the_runtime_runs_as_a_non_root_user() -> None:
    users = final("USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    last_user = max(n for n, i in enumerate(instructions()) if i.keyword == "USER")
    assert not any(i.keyword == "RUN" for i in instructions()[last_user:]), "nothing runs as root after USER"


def test_the_command_is_a_countersign_command() -> None:
    (cmd,) = final("CMD")
    argv = json.loads(cmd)  # exec form: signals reach countersign, not a shell
    assert argv[0] == "countersign"
    assert pyproject()["project"]["scripts"]["countersign"] == "countersign.cli.main:app"
    assert argv[1] in cli_commands()
    from countersign.cli.main import app

    result = CliRunner().invoke(app, [*argv[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert not final("ENTRYPOINT"), "compose's `command` is the whole command line"


def test_stop_signal_is_the_one_the_worker_handles() -> None:
    # `run_worker` shuts down gracefully on SIGTERM and SIGINT (tests/observability/test_worker_watchdog.py).
    assert final("STOPSIGNAL") in ([], ["SIGTERM"], ["SIGINT"])


def test_compose_builds_this_dockerfile_and_finds_the_health_check_in_it() -> None:
    copies = final("COPY")
    for name in ("worker", "api"):
        assert services()[name]["build"] == "."
    check = services()["worker"]["healthcheck"]["test"]
    script = check[-1]
    assert any(copy.split()[-1] == script for copy in copies), f"{script} is not copied into the image"


def dockerignore() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_build_context_is_an_allow_list() -> None:
    patterns = dockerignore()
    assert patterns[0] == "*", ".dockerignore starts by leaving everything out"
    included = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    for secret in (".env", ".countersign", ".venv", ".git"):
        assert secret not in included
    sources = []
    for instruction in instructions():
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
            sources += instruction.arguments.split()[:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file"
        assert source.rstrip("/") in included, f"COPY {source}: .dockerignore leaves it out of the context"


@pytest.mark.parametrize("package", wheel_packages())
def test_every_package_is_in_the_build_context(package: str) -> None:
    assert f"!{package}/" in dockerignore()
