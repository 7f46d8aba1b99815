"""Countersign as a wheel: it claims one top-level name, `countersign`, and runs from site-packages alone.

The wheel is built by the project's own build backend (hatchling, as `pip install` and the Dockerfile
build it) and unpacked into a directory laid out as site-packages. The installed copy is then imported
in a process whose working directory is not the checkout, ahead of the venv's editable install, so a
module that still imported a generic top-level name (`api`, `models`, `worker`, ...) fails here.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("building the wheel needs `uv` (the suite runs under `uv run`)")
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [uv, "build", "--wheel", str(REPO), "--out-dir", str(dist)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (built,) = dist.glob("countersign-*.whl")
    return built


def names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_claims_no_top_level_name_but_countersign(wheel: Path) -> None:
    top = {name.split("/")[0] for name in names(wheel)}
    (info,) = [name for name in top if name.endswith(".dist-info")]
    assert top - {info} == {"countersign"}, sorted(top)


def test_the_wheel_carries_the_files_the_code_reads_beside_it(wheel: Path) -> None:
    inside = set(names(wheel))
    for data in (
        "countersign/config/default_policy.yaml",
        "countersign/graphs/demo_review.yaml",
        "countersign/llm/eval_requests.jsonl",
        "countersign/api/static/ui/index.html",
        "countersign/api/static/ws-test.html",
    ):
        assert data in inside, data
    entry_points = next(name for name in inside if name.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert "countersign = countersign.cli.main:app" in archive.read(entry_points).decode()


def test_every_module_imports_from_the_installed_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    modules = sorted(
        name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for name in names(wheel)
        if name.endswith(".py") and not name.endswith("__main__.py")
    )
    assert "countersign.worker" in modules and "countersign.api.main" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(site)!r}), (name, module.__file__)\n"
        "print('imported', len(sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # The command, from the same copy.
    cli = subprocess.run(
        [sys.executable, "-m", "countersign", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0 and "worker" in cli.stdout, cli.stderr


def test_python_worker_py_runs_the_worker_from_a_checkout(tmp_path: Path) -> None:
    # DESIGN.md's `python worker.py`: the checkout's script runs the composition root. Port 9 (discard):
    # nothing listens, so the worker stops at connecting, with its one line and exit code 1.
    env = {
        **os.environ,
        "COUNTERSIGN_DATA_DIR": str(tmp_path),
        "COUNTERSIGN_TEMPORAL_ADDRESS": "127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "worker.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: Temporal at 127.0.0.1:9 is not reachable")
