"""A notification channel as a plugin module that is not packaged: the tests name it in
COUNTERSIGN_PLUGINS (`tests.example_channel`), which makes the worker load its `CHANNELS`."""

import json
from pathlib import Path

from countersign.plugins import ChannelContext, Notification, Recipient

LOG = "example-channel.jsonl"


class JsonLinesChannel:
    """One line per notification in `<data-dir>/example-channel.jsonl` (a stand-in for a chat API)."""

    name = "example-jsonl"

    def __init__(self, context: ChannelContext) -> None:
        self._path: Path = context.data_dir / LOG

    async def deliver(self, note: Notification, recipients: list[Recipient]) -> int:
        # Idempotent on the key, as channels must be: a retried activity delivers the same note again.
        told = self._path.read_text().splitlines() if self._path.exists() else []
        if all(json.loads(line)["key"] != note.key for line in told):
            line = {"key": note.key, "kind": note.kind, "recipients": sorted(r.name for r in recipients)}
            with self._path.open("a") as log:
                log.write(json.dumps(line) + "\n")
        return len(recipients)


CHANNELS = [JsonLinesChannel]
