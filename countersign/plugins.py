"""The stable surface plugin packages import from (docs/extending.md): the decorators, registries and
types a tool, a graph node function or a notification channel is written with.

Countersign's own code imports `activities.plugins` (the loader) and the layers themselves, never this
module: it is the product's public face for plugin authors, so modules can move inside the tree without
breaking a plugin.
"""

from activities.plugins import (
    CHANNELS_GROUP,
    NODES_GROUP,
    TOOLS_GROUP,
    ActionFacts,
    Channel,
    ChannelContext,
    ChannelFactory,
    ChannelPlugin,
    Finding,
    Integrations,
    NodeContext,
    NodeError,
    NodeRegistry,
    Notification,
    PluginError,
    Plugins,
    Recipient,
    RequestType,
    RetryLater,
    Risk,
    SideEffect,
    ToolCatalog,
    ToolContext,
    ToolRun,
    build_channels,
    load_plugins,
    node_fn,
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
