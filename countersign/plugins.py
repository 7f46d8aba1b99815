"""The stable surface plugin packages import from (docs/extending.md): the decorators, registries and
types a tool, a graph node function or a notification channel is written with.

Countersign's own code imports `countersign.activities.plugins` (the loader) and the layers
themselves, never this module: it is the product's public face for plugin authors, so modules can move
inside the tree without breaking a plugin.
"""

# Every name of the loader's `__all__`, and only those: the one list of what plugin authors may use.
from countersign.activities.plugins import *  # noqa: F403
from countersign.activities.plugins import __all__ as __all__
