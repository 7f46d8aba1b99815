"""The user's view of a run that seed 004's input broke: POST /graph/run with code past Python's
parser limits used to leave GET /graph/state saying RUNNING for ever, and the stream open, while the
execution had failed. Now the run ends FAILED, says why, and the stream ends with `run_ended`."""

import asyncio

from tests.api.conftest import Api
from tests.api.test_graphs_api import collect, finished, run


async def test_code_past_the_parsers_limits_ends_the_run_failed_where_the_user_looks(
    api: Api, served: str
) -> None:
    run_id = await run(api, "demo-review", "-" * 10_000 + "1")  # ast.parse: MemoryError
    live = await asyncio.wait_for(collect(f"ws://{served}/ws/{run_id}", headers=api.as_("requester")), 60)
    done = await finished(api, run_id)
    assert done["status"] == "FAILED" and done["current_node"] is None
    assert done["error"].startswith("node 'extract' failed: code refused: it nests more than 1000 levels")
    assert [(e["kind"], e["node"]) for e in live[-2:]] == [("node_failed", "extract"), ("run_ended", None)]
    assert live[-1]["status"] == "FAILED" and [e["seq"] for e in live] == list(range(done["events"]))
