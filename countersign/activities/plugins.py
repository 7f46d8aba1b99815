"""Plugins: tools, graph node functions and notification channels added without editing Countersign.

A plugin is an ordinary Python distribution that declares entry points in three groups:

    [project.entry-points."countersign.tools"]          name = "pkg.module:TOOLS"     a ToolCatalog
    [project.entry-points."countersign.graph_nodes"]    name = "pkg.module:NODES"     a NodeRegistry
    [project.entry-points."countersign.channels"]       name = "pkg.module:CHANNELS"  a channel factory,
                                                                                      or a list of them

or, for code that is not packaged, a module named in COUNTERSIGN_PLUGINS (`Settings.plugins`) that
defines any of `TOOLS`, `NODES` and `CHANNELS` with those meanings. docs/extending.md is the guide.

`load_plugins` runs in the composition roots only (the worker, the gateway, the CLI): workflow code never
imports a plugin, so plugin imports (I/O, whatever they do at import time) never reach Temporal's
sandbox or a replay. The built-ins are always loaded first, from code rather than from this project's own
entry points: they must be there whatever the state of the install's metadata (a source checkout on
PYTHONPATH, an image that copied the tree), and the recorded histories and the default policy assume them.
A plugin that cannot be imported, has the wrong shape, or reuses a name raises `PluginError` naming it:
a worker that silently lacked a tool would leave approved actions failing at execution time.

Plugin authors import from `countersign.plugins`, which re-exports this module's surface: the stable
name, whatever moves inside the tree.
"""

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from countersign.activities.email_channel import DEFAULT_PUBLIC_URL, EmailChannel
from countersign.activities.notify import Channel, OutboxChannel
from countersign.activities.slack_channel import SlackChannel, web_client
from countersign.activities.teams_channel import TeamsChannel
from countersign.config.settings.channels import ChannelSettings
from countersign.graphs.registry import (
    NODE_FUNCTIONS,
    NodeContext,
    NodeError,
    NodeFn,
    NodeRegistry,
    build_node_registry,
    node_fn,
)
from countersign.models.enums import RequestType, Risk, Role, SideEffect
from countersign.models.errors import CountersignError
from countersign.models.facts import ActionFacts
from countersign.models.notifications import Notification
from countersign.models.principals import Recipient
from countersign.models.proposal import Finding
from countersign.store.decision_links import DecisionLinks
from countersign.store.sql import OpenedOnFirstUse, default_url
from countersign.store.tool_effects import ToolEffects
from countersign.tools.builtin import build_registry
from countersign.tools.integrations import Integrations
from countersign.tools.registry import (
    CATALOG,
    RetryLater,
    Tool,
    ToolCatalog,
    ToolContext,
    ToolRegistry,
    ToolRun,
    tool,
)

__all__ = [
    "CHANNELS_GROUP",
    "NODES_GROUP",
    "TOOLS_GROUP",
    "ActionFacts",
    "Channel",
    "ChannelContext",
    "ChannelFactory",
    "ChannelPlugin",
    "Finding",
    "Integrations",
    "NodeContext",
    "NodeError",
    "NodeRegistry",
    "Notification",
    "PluginError",
    "Plugins",
    "Recipient",
    "RequestType",
    "RetryLater",
    "Risk",
    "SideEffect",
    "ToolCatalog",
    "ToolContext",
    "ToolRun",
    "build_channels",
    "load_plugins",
    "node_fn",
    "tool",
]

log = logging.getLogger(__name__)

TOOLS_GROUP = "countersign.tools"
NODES_GROUP = "countersign.graph_nodes"
CHANNELS_GROUP = "countersign.channels"
# What a module named in COUNTERSIGN_PLUGINS defines, per group.
MODULE_ATTRIBUTES = {TOOLS_GROUP: "TOOLS", NODES_GROUP: "NODES", CHANNELS_GROUP: "CHANNELS"}
BUILTIN = "Countersign's built-ins"


class PluginError(CountersignError):
    """A plugin that cannot be used; the message names it (entry point and distribution, or module)."""


@dataclass(frozen=True)
class ChannelContext:
    """What a channel factory is given when the worker builds its channels."""

    data_dir: Path
    tools: ToolRegistry
    integrations: Integrations
    # Where reviewers reach the gateway (COUNTERSIGN_PUBLIC_URL): links in messages point there.
    public_url: str = DEFAULT_PUBLIC_URL
    # Replies to `decide+<token>@<reply_domain>` may decide (COUNTERSIGN_REPLY_DOMAIN); None: no reply-to.
    reply_domain: str | None = None
    # The decision links store, opened on first use (`await links.get()`); None: messages carry no links.
    links: OpenedOnFirstUse[DecisionLinks] | None = None
    # Per role a Teams webhook URL (a secret): COUNTERSIGN_TEAMS_WEBHOOKS, passed by the worker.
    teams_webhooks: Mapping[Role, SecretStr] = field(default_factory=dict)
    # The channel settings (Slack's token and role channels...), and the SQL store (None: SQLite in the
    # data dir).
    settings: ChannelSettings = field(default_factory=ChannelSettings)
    store_url: str | None = None
    # The outbox and tool records in that store, shared with the worker's tools (None: the email
    # channel opens its own on `store_url`).
    effects: ToolEffects | None = None

    @property
    def database_url(self) -> str:
        """Countersign's database: `store_url`, or SQLite in the data dir."""
        return self.store_url or default_url(self.data_dir)


# A factory returns None for a channel its configuration leaves off (Teams without a webhook, Slack
# without a bot token).
ChannelFactory = Callable[[ChannelContext], Channel | None]


@dataclass(frozen=True)
class ChannelPlugin:
    """A channel factory and where it came from, so a clash found when the worker builds it names both."""

    origin: str
    factory: ChannelFactory


@dataclass(frozen=True)
class Plugins:
    """The registries a process runs with: the built-ins plus every plugin's additions."""

    tools: ToolRegistry
    nodes: NodeRegistry
    channels: tuple[ChannelPlugin, ...]
    # Each plugin source that added something, in load order (for the start-up log line).
    sources: tuple[str, ...]


def _outbox(context: ChannelContext) -> Channel:
    return OutboxChannel(context.database_url)


def _email(context: ChannelContext) -> Channel:
    return EmailChannel(
        context.tools,
        context.data_dir,
        context.integrations,
        links=context.links,
        public_url=context.public_url,
        reply_domain=context.reply_domain,
        store_url=context.database_url,
        effects=context.effects,
    )


def _teams(context: ChannelContext) -> Channel | None:
    if not context.teams_webhooks:
        return None
    return TeamsChannel(context.teams_webhooks, context.public_url, context.database_url)


def _slack(context: ChannelContext) -> Channel | None:
    settings = context.settings
    if settings.slack_bot_token is None:
        return None
    return SlackChannel(
        web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url),
        context.database_url,
        public_url=settings.public_url,
        role_channels=settings.slack_role_channels,
    )


# Every notification is recorded in the notification log and emailed to recipients with an address; one
# asking for a decision is also posted to its roles' Teams channels, where webhooks are configured, and
# to Slack with COUNTERSIGN_SLACK_BOT_TOKEN (docs/slack.md).
BUILTIN_CHANNELS: tuple[ChannelPlugin, ...] = (
    ChannelPlugin(BUILTIN, _outbox),
    ChannelPlugin(BUILTIN, _email),
    ChannelPlugin(BUILTIN, _teams),
    ChannelPlugin(BUILTIN, _slack),
)


@dataclass(frozen=True)
class _Source:
    """One place plugin objects come from: an entry point, or a module named in the settings."""

    origin: str
    load: Callable[[], dict[str, object]]  # group -> the object it gives for that group


def _entry_point_origin(point: EntryPoint) -> str:
    dist = point.dist
    where = f" of {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {point.name!r} = {point.value!r} in group {point.group!r}{where}"


def _entry_point_source(point: EntryPoint) -> _Source:
    def load() -> dict[str, object]:
        return {point.group: point.load()}

    return _Source(_entry_point_origin(point), load)


def _entry_point_sources() -> list[_Source]:
    sources = []
    for group in MODULE_ATTRIBUTES:
        # Sorted: the load order (and so which of two clashing plugins is named second) is the same on
        # every machine, whatever order the path lists distributions in.
        points = sorted(entry_points(group=group), key=lambda p: (p.dist.name if p.dist else "", p.name))
        for point in points:
            sources.append(_entry_point_source(point))
    return sources


def _module_source(name: str) -> _Source:
    origin = f"module {name!r} in COUNTERSIGN_PLUGINS"

    def load() -> dict[str, object]:
        module = importlib.import_module(name)
        found = {
            group: getattr(module, attribute)
            for group, attribute in MODULE_ATTRIBUTES.items()
            if hasattr(module, attribute)
        }
        if not found:
            raise PluginError(f"{origin} defines none of {', '.join(MODULE_ATTRIBUTES.values())}")
        return found

    return _Source(origin, load)


class _Loader:
    def __init__(self) -> None:
        self.tools = build_registry()
        self.nodes = NodeRegistry()
        for fn in build_node_registry():
            self.nodes.add(fn)
        self.channels = list(BUILTIN_CHANNELS)
        self.tool_owner = dict.fromkeys(self.tools.names(), BUILTIN)
        self.node_owner = dict.fromkeys(self.nodes.names(), BUILTIN)
        # An object reached twice (a package both installed and named in the setting) is one plugin.
        self.seen: set[int] = set()
        self.sources: list[str] = []

    def load(self, source: _Source) -> None:
        tools_before, nodes_before = set(CATALOG.tools), NODE_FUNCTIONS.names()
        try:
            found = source.load()
        except PluginError:
            raise
        except Exception as error:
            raise PluginError(f"{source.origin} failed to load: {type(error).__name__}: {error}") from error
        # `@tool` and `@node_fn` without `catalog=`/`registry=` write into Countersign's own registries,
        # which the registries built above were copied from already: those would be silently missing.
        strays = sorted(set(CATALOG.tools) - tools_before) + sorted(NODE_FUNCTIONS.names() - nodes_before)
        if strays:
            raise PluginError(
                f"{source.origin} declared {', '.join(map(repr, strays))} into Countersign's own registry; "
                "declare them in the plugin's own ToolCatalog / NodeRegistry (`catalog=`, `registry=`)"
            )
        added = False
        for group, value in found.items():
            if id(value) in self.seen:
                continue
            self.seen.add(id(value))
            if group == TOOLS_GROUP:
                self._add_tools(source.origin, value)
            elif group == NODES_GROUP:
                self._add_nodes(source.origin, value)
            else:
                self._add_channels(source.origin, value)
            added = True
        if added:
            self.sources.append(source.origin)

    def _add_tools(self, origin: str, value: object) -> None:
        if not isinstance(value, ToolCatalog):
            raise PluginError(f"{origin} is {_kind(value)}, not a ToolCatalog")
        if not value.tools:
            raise PluginError(f"{origin} declares no tools")
        tools: Iterable[Tool[Any, Any]] = value.tools.values()
        for declared in tools:
            if declared.name in self.tool_owner:
                raise PluginError(
                    f"{origin} declares tool {declared.name!r}, which {self.tool_owner[declared.name]} "
                    "already registered"
                )
            self.tools.register(declared)
            self.tool_owner[declared.name] = origin

    def _add_nodes(self, origin: str, value: object) -> None:
        if not isinstance(value, NodeRegistry):
            raise PluginError(f"{origin} is {_kind(value)}, not a NodeRegistry")
        functions: list[NodeFn] = list(value)
        if not functions:
            raise PluginError(f"{origin} declares no node functions")
        for fn in functions:
            if fn.name in self.node_owner:
                raise PluginError(
                    f"{origin} declares node function {fn.name!r}, which {self.node_owner[fn.name]} "
                    "already registered"
                )
            self.nodes.add(fn)
            self.node_owner[fn.name] = origin

    def _add_channels(self, origin: str, value: object) -> None:
        factories = list(value) if isinstance(value, list | tuple) else [value]
        if not factories:
            raise PluginError(f"{origin} declares no channels")
        for factory in factories:
            if not callable(factory):
                raise PluginError(f"{origin} is {_kind(factory)}, not a channel factory (a callable)")
            self.channels.append(ChannelPlugin(origin, factory))


def _kind(value: object) -> str:
    return f"a {type(value).__module__}.{type(value).__qualname__}"


def load_plugins(modules: Sequence[str] = ()) -> Plugins:
    """The built-ins, then every installed entry point of the three groups, then `modules` (the
    COUNTERSIGN_PLUGINS setting). Fresh registries each call: nothing global is changed."""
    loader = _Loader()
    for source in [*_entry_point_sources(), *(_module_source(name) for name in modules)]:
        loader.load(source)
    if loader.sources:
        log.info("plugins: %s", "; ".join(loader.sources))
    return Plugins(
        tools=loader.tools,
        nodes=loader.nodes,
        channels=tuple(loader.channels),
        sources=tuple(loader.sources),
    )


def build_channels(plugins: Sequence[ChannelPlugin], context: ChannelContext) -> list[Channel]:
    """Each factory's channel, in order, but for those a factory left off (None). A channel's `name`
    keys the notify activity's result, so two channels of one name (or one without a name) are refused
    rather than counted as one."""
    channels: list[Channel] = []
    owners: dict[str, str] = {}
    for plugin in plugins:
        try:
            channel = plugin.factory(context)
        except Exception as error:
            raise PluginError(
                f"{plugin.origin}: its channel could not be built: {type(error).__name__}: {error}"
            ) from error
        if channel is None:
            continue  # not configured here
        name = getattr(channel, "name", None)
        if not isinstance(name, str) or not name or not callable(getattr(channel, "deliver", None)):
            raise PluginError(
                f"{plugin.origin} built {_kind(channel)}: a channel needs a `name` and `deliver`"
            )
        if name in owners:
            raise PluginError(f"{plugin.origin} adds channel {name!r}, which {owners[name]} already added")
        owners[name] = plugin.origin
        channels.append(channel)
    return channels
