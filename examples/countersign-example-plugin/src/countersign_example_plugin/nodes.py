"""The `example.count_words` graph node function.

Node functions are declared like Countersign's own (graphs/review.py), with `@node_fn`, into the
plugin's own `NodeRegistry` (`registry=NODES`): the entry point names that registry. Names are
prefixed with the plugin's (`example.`) so they cannot clash with another plugin's.
"""

from typing import Any

from countersign.plugins import NodeContext, NodeError, NodeRegistry, node_fn

NODES = NodeRegistry()


@node_fn("example.count_words", registry=NODES, local=True)
def count_words(ctx: NodeContext) -> dict[str, Any]:
    """Count the words of `state.text` into `state.word_count`.

    Pure (no I/O, the same answer for the same state), so it runs as a local activity (`local=True`).
    """
    text = ctx.state.get("text")
    if not isinstance(text, str):
        # Bad input fails the node without retries: another attempt would fail the same way.
        raise NodeError("example.count_words needs `text`, a string, in the run's state")
    count = len(text.split())
    ctx.log(f"Counted {count} words")
    return {"word_count": count}
