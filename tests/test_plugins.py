"""Plugin loading (activities/plugins.py) through real entry-point discovery: each test installs
distributions in a directory of its own on sys.path (tests/plugin_sites.py), as an installer would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from countersign.activities.plugins import (
    BUILTIN_CHANNELS,
    CHANNELS_GROUP,
    NODES_GROUP,
    TOOLS_GROUP,
    ChannelContext,
    ChannelPlugin,
    PluginError,
    build_channels,
    load_plugins,
)
from countersign.api.main import attach, create_app
from countersign.config.settings import Settings
from countersign.graphs.registry import build_node_registry
from countersign.tools.builtin import build_registry
from countersign.tools.integrations import Integrations
from countersign.tools.registry import CATALOG
from countersign.worker import run_worker
from tests.plugin_sites import distribution, installed

TOOL_MODULE = """
from pydantic import BaseModel
from countersign.plugins import Risk, SideEffect, ToolCatalog, ToolRun, tool

TOOLS = ToolCatalog()

class Args(BaseModel):
    text: str

class Result(BaseModel):
    echoed: str

@tool(name="{name}", description="Echo.", args=Args, result=Result, side_effect=SideEffect.NONE,
      risk=Risk.LOW, catalog=TOOLS)
async def echo(args, ctx):
    return ToolRun(result=Result(echoed=args.text), replayed=False)
"""

NODE_MODULE = """
from countersign.plugins import NodeRegistry, node_fn

NODES = NodeRegistry()

@node_fn("{name}", registry=NODES)
def shout(ctx):
    return {{"shout": str(ctx.state.get("text", "")).upper()}}
"""

CHANNEL_MODULE = """
class Channel:
    name = "{name}"

    def __init__(self, context):
        self.data_dir = context.data_dir

    async def deliver(self, note, recipients):
        return 0

CHANNELS = Channel
"""


def one_plugin(tmp_path: Path, package: str, **entry: tuple[str, str]) -> Path:
    """A site with distribution `package`, whose modules are `entry`'s sources, one entry point each:
    group alias (tools, nodes, channels) -> (module source, attribute)."""
    groups = {"tools": TOOLS_GROUP, "nodes": NODES_GROUP, "channels": CHANNELS_GROUP}
    modules = {f"{package}/__init__.py": ""}
    points: dict[str, dict[str, str]] = {}
    for alias, (source, attribute) in entry.items():
        modules[f"{package}/{alias}.py"] = source
        points[groups[alias]] = {package: f"{package}.{alias}:{attribute}"}
    return distribution(tmp_path / package, package, modules, points)


def test_without_plugins_the_built_ins_are_all_there() -> None:
    plugins = load_plugins()
    assert plugins.tools.names() == build_registry().names()
    assert "send_email" in plugins.tools and "create_purchase_order" in plugins.tools
    assert plugins.nodes.names() == build_node_registry().names() >= {"review.analyze"}
    assert plugins.channels == BUILTIN_CHANNELS and plugins.sources == ()


def test_installed_entry_points_add_tools_nodes_and_channels(tmp_path: Path) -> None:
    site = one_plugin(
        tmp_path,
        "plug_all",
        tools=(TOOL_MODULE.format(name="echo_text"), "TOOLS"),
        nodes=(NODE_MODULE.format(name="plug.shout"), "NODES"),
        channels=(CHANNEL_MODULE.format(name="quiet"), "CHANNELS"),
    )
    with installed(site, "plug_all"):
        plugins = load_plugins()
    assert set(plugins.tools.names()) == {*build_registry().names(), "echo_text"}
    assert plugins.tools.get("echo_text").spec().args_schema["required"] == ["text"]
    assert plugins.nodes.names() == {*build_node_registry().names(), "plug.shout"}
    context = ChannelContext(data_dir=tmp_path, tools=plugins.tools, integrations=Integrations())
    assert [c.name for c in build_channels(plugins.channels, context)] == ["outbox", "email", "quiet"]
    assert len(plugins.sources) == 3 and all("of plug_all 1.0" in s for s in plugins.sources)
    # Fresh registries: what one load added is in no other one.
    assert "echo_text" not in build_registry() and "echo_text" not in CATALOG.tools
    assert "echo_text" not in load_plugins().tools


def test_a_plugin_that_fails_to_import_stops_the_load_naming_it(tmp_path: Path) -> None:
    site = one_plugin(tmp_path, "plug_broken", tools=("import no_such_dependency\n", "TOOLS"))
    with installed(site, "plug_broken"), pytest.raises(PluginError) as caught:
        load_plugins()
    message = str(caught.value)
    assert "entry point 'plug_broken' = 'plug_broken.tools:TOOLS'" in message
    assert "of plug_broken 1.0" in message and "group 'countersign.tools'" in message
    assert "ModuleNotFoundError: No module named 'no_such_dependency'" in message


def test_a_plugin_reusing_a_built_in_tool_name_is_refused(tmp_path: Path) -> None:
    site = one_plugin(tmp_path, "plug_clash", tools=(TOOL_MODULE.format(name="send_email"), "TOOLS"))
    with installed(site, "plug_clash"), pytest.raises(PluginError) as caught:
        load_plugins()
    assert "'plug_clash.tools:TOOLS'" in str(caught.value)
    assert "tool 'send_email', which Countersign's built-ins already registered" in str(caught.value)


def test_two_plugins_with_one_node_name_are_refused_naming_both(tmp_path: Path) -> None:
    first = one_plugin(tmp_path, "plug_a", nodes=(NODE_MODULE.format(name="shared.name"), "NODES"))
    second = one_plugin(tmp_path, "plug_b", nodes=(NODE_MODULE.format(name="shared.name"), "NODES"))
    with installed(first, "plug_a"), installed(second, "plug_b"), pytest.raises(PluginError) as caught:
        load_plugins()
    message = str(caught.value)
    assert message.startswith("entry point 'plug_b'") and "'shared.name'" in message
    assert "which entry point 'plug_a'" in message


def test_an_entry_point_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    # A node registry where a tool catalog belongs: the loader says what it found and what it wanted.
    site = one_plugin(tmp_path, "plug_kind", tools=(NODE_MODULE.format(name="k.n"), "NODES"))
    with installed(site, "plug_kind"), pytest.raises(PluginError) as caught:
        load_plugins()
    assert "is a countersign.graphs.registry.NodeRegistry, not a ToolCatalog" in str(caught.value)


def test_a_tool_declared_into_countersigns_own_catalog_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `@tool` without `catalog=`: the tool lands in the global catalog the registry was copied from.
    monkeypatch.setattr(CATALOG, "tools", dict(CATALOG.tools))  # whatever it adds is undone
    source = TOOL_MODULE.format(name="stray_tool").replace(", catalog=TOOLS", "")
    site = one_plugin(tmp_path, "plug_stray", tools=(source, "TOOLS"))
    with installed(site, "plug_stray"), pytest.raises(PluginError) as caught:
        load_plugins()
    assert "declared 'stray_tool' into Countersign's own registry" in str(caught.value)


def test_modules_named_in_the_setting_are_loaded(tmp_path: Path) -> None:
    modules = {
        "plug_mod/__init__.py": "",
        "plug_mod/tools.py": TOOL_MODULE.format(name="mod_tool"),
        "plug_mod/both.py": "from plug_mod.tools import TOOLS\n" + CHANNEL_MODULE.format(name="mod_channel"),
    }
    site = tmp_path / "plain"
    for relative, source in modules.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_text(source)
    with installed(site, "plug_mod"):
        # Named twice (two modules sharing one catalog): one plugin, not a clash.
        plugins = load_plugins(["plug_mod.both", "plug_mod.tools"])
    assert "mod_tool" in plugins.tools
    assert [c.origin for c in plugins.channels[len(BUILTIN_CHANNELS) :]] == [
        "module 'plug_mod.both' in COUNTERSIGN_PLUGINS"
    ]
    assert plugins.sources == ("module 'plug_mod.both' in COUNTERSIGN_PLUGINS",)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("no_such_plugin_module", "module 'no_such_plugin_module' in COUNTERSIGN_PLUGINS failed to load"),
        ("json", "module 'json' in COUNTERSIGN_PLUGINS defines none of TOOLS, NODES, CHANNELS"),
    ],
)
def test_a_setting_module_that_gives_nothing_is_refused(module: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        load_plugins([module])


def test_two_channels_of_one_name_are_refused(tmp_path: Path) -> None:
    context = ChannelContext(data_dir=tmp_path, tools=build_registry(), integrations=Integrations())
    twin = ChannelPlugin("module 'twin'", BUILTIN_CHANNELS[0].factory)
    with pytest.raises(
        PluginError, match="module 'twin' adds channel 'outbox', which Countersign's built-ins"
    ):
        build_channels([*BUILTIN_CHANNELS, twin], context)

    def broken(context: ChannelContext) -> object:
        raise RuntimeError("no webhook URL")

    with pytest.raises(
        PluginError, match="module 'x': its channel could not be built: RuntimeError: no webhook"
    ):
        build_channels([ChannelPlugin("module 'x'", broken)], context)  # type: ignore[arg-type]


async def test_the_worker_and_the_gateway_refuse_to_start_with_a_broken_plugin(tmp_path: Path) -> None:
    # Nothing listens at the address: the refusal must come before any connection is tried.
    settings = Settings(data_dir=tmp_path, temporal_address="127.0.0.1:9", plugins=["no_such_plugin_module"])
    with pytest.raises(PluginError, match="no_such_plugin_module"):
        await run_worker(settings)
    app = create_app(settings)
    with pytest.raises(PluginError, match="no_such_plugin_module"):
        await attach(app, settings, client=object())  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["worker", "api", "up"])
def test_the_commands_name_the_broken_plugin_without_a_traceback(tmp_path: Path, command: str) -> None:
    site = one_plugin(tmp_path, "plug_cli", tools=("raise RuntimeError('licence expired')\n", "TOOLS"))
    env = {**os.environ, "PYTHONPATH": str(site), "COUNTERSIGN_PLUGINS": "plug_cli.tools"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "countersign",
            command,
            "--data-dir",
            str(tmp_path),
            "--temporal-address",
            "127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    # The installed entry point fails first; either way the plugin and its reason are named.
    assert "plug_cli" in output and "RuntimeError: licence expired" in output, output
    assert "Traceback" not in output
