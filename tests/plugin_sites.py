"""Installed distributions for the plugin tests, without touching the project's venv.

A "site" is a directory laid out as an installer leaves site-packages: the packages and a
`<name>-<version>.dist-info` whose `entry_points.txt` `importlib.metadata` reads. Putting it on
`sys.path` installs it for this process, as far as entry-point discovery and imports can tell;
`installed` takes it off again and forgets its modules, so later tests see the venv as it was and
`uv sync --frozen` never sees a change.
"""

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "countersign-example-plugin"


def distribution(
    site: Path, name: str, modules: dict[str, str], entry_points: dict[str, dict[str, str]]
) -> Path:
    """A site holding distribution `name`: `modules` (relative path -> source) and its entry points
    (group -> {name: "module:attr"}), as an installed wheel leaves them."""
    for relative, source in modules.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    groups = [
        f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in points.items())
        for group, points in entry_points.items()
    ]
    (info / "entry_points.txt").write_text("\n".join(groups))
    return site


def build_example(out: Path) -> Path:
    """The example plugin built into a wheel by its own build backend (hatchling, from the package
    index as in CI) and unpacked into a site: exactly what `pip install` would leave."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("building the example plugin needs `uv` (the suite runs under `uv run`)")
    dist = out / "dist"
    done = subprocess.run(
        [uv, "build", "--wheel", str(EXAMPLE), "--out-dir", str(dist)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = dist.glob("countersign_example_plugin-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


@contextlib.contextmanager
def installed(site: Path, *packages: str) -> Iterator[None]:
    """`site` on sys.path for the block; its `packages` are forgotten afterwards."""
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(site))
        for module in list(sys.modules):
            if module.partition(".")[0] in packages:
                del sys.modules[module]
        importlib.invalidate_caches()
