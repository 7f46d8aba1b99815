"""The example plugin (examples/countersign-example-plugin) end to end: built into a wheel by its own
build backend, installed in a directory on sys.path (never into the venv), found through its entry
points by the gateway and the worker, and used: its tool runs after approval through the real gateway,
Temporal dev server and worker; its node function runs in a graph. The worker also loads a channel
from a module named in COUNTERSIGN_PLUGINS (tests/example_channel.py)."""

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from countersign.activities.plugins import load_plugins
from countersign.llm.factory import build_planner
from countersign.llm.spec import LLMOptions, parse_chain
from countersign.worker import WorkerGroup, build_worker
from tests.api.conftest import Api
from tests.api.test_graphs_api import finished, run
from tests.api.test_workflows_api import decide, submit, waiting
from tests.example_channel import LOG
from tests.fake_llm import FakeLLM, follow_up_plan, openai_answer
from tests.helpers import TEST_TRUST
from tests.plugin_sites import build_example, installed

SECRET = "sk-test-PLUGINSECRET0123456789"
PACKAGE = "countersign_example_plugin"
POSTING = {"account": "6100-20", "amount": 1250.0, "currency": "EUR", "memo": "Team offsite catering"}


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_example(tmp_path_factory.mktemp("example-plugin"))


@pytest.fixture(autouse=True, scope="module")
def example_installed(example_site: Path) -> Iterator[None]:
    """Installed for this module's tests only: the rest of the suite sees the built-ins alone."""
    with installed(example_site, PACKAGE):
        yield


@pytest.fixture
async def worker(
    client: Client, task_queue: str, tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[WorkerGroup]:
    """The `api` fixture's worker, built as `countersign worker` builds it: from `load_plugins`, with
    an OpenAI planner (the real SDK against the scripted local endpoint) offered the plugin's tool."""
    for name, value in fake_llm.vendor_env(SECRET, SECRET).items():
        monkeypatch.setenv(name, value)
    plugins = load_plugins(["tests.example_channel"])
    options = LLMOptions(timeout_seconds=5, max_output_tokens=1000, max_repairs=2)
    planner = build_planner(parse_chain("openai:gpt-4.1-mini")[0], registry=plugins.tools, options=options)
    async with build_worker(
        client,
        task_queue=task_queue,
        data_dir=tmp_path,
        planner=planner,
        trust=TEST_TRUST,
        registry=plugins.tools,
        node_registry=plugins.nodes,
        channels=plugins.channels,
    ) as group:
        yield group


def test_the_example_is_found_through_its_entry_points(example_site: Path) -> None:
    plugins = load_plugins()
    assert "post_to_ledger" in plugins.tools and "example.count_words" in plugins.nodes
    assert plugins.sources == (
        "entry point 'example' = 'countersign_example_plugin.tools:TOOLS' in group 'countersign.tools'"
        " of countersign-example-plugin 0.1.0",
        "entry point 'example' = 'countersign_example_plugin.nodes:NODES' in group 'countersign.graph_nodes'"
        " of countersign-example-plugin 0.1.0",
    )
    # The wheel's copy, not the source tree's: the package as its build backend packed it.
    tool = plugins.tools.get("post_to_ledger")
    assert tool.handler.__code__.co_filename.startswith(str(example_site))


async def test_the_plugin_tool_is_listed_planned_approved_and_run(
    api: Api, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    listed = await api.http.get("/tools", headers=api.as_("requester"))
    assert listed.status_code == 200, listed.text
    specs = {spec["name"]: spec for spec in listed.json()["items"]}
    assert {"post_to_ledger", "send_email"} <= set(specs)
    assert specs["post_to_ledger"]["args_schema"]["required"] == ["account", "amount", "memo"]

    plan = follow_up_plan(
        fields={**follow_up_plan()["fields"], "amount": 1250, "currency": "EUR", "email": None},
        summary="Post EUR 1,250 for the team offsite's catering to account 6100-20.",
        rationale="A posting to the ledger is what the request asks for.",
        action={"tool": "post_to_ledger", "args": POSTING},
    )
    fake_llm.script(openai_answer(plan))
    workflow_id = await submit(api, {"text": "Book the EUR 1,250 offsite catering to account 6100-20"})
    view: dict[str, Any] = await waiting(api, workflow_id)
    # The planner was offered the plugin's tool, and validation parsed its args with the plugin's model.
    assert "post_to_ledger" in json.dumps(fake_llm.requests[0].body)
    assert view["proposal"]["tool"] == "post_to_ledger" and view["validation"]["ok"] is True
    assert [step["role"] for step in view["chain"]] == ["MANAGER"]
    assert not (tmp_path / "ledger").exists(), "nothing is posted before approval"

    status, after = await decide(api, workflow_id, "manager", decision="approved", notes="ok")
    assert status == 200, after
    assert after["state"] == "ACTION_EXECUTED", after
    result = after["result"]
    assert result["tool"] == "post_to_ledger" and result["result"]["posting_id"].startswith("POST-")
    (posted,) = (tmp_path / "ledger").glob("*.json")
    assert {k: v for k, v in json.loads(posted.read_text()).items() if k in POSTING} == POSTING

    # The channel named in COUNTERSIGN_PLUGINS told the reviewers (the two managers) it was waiting.
    told = [json.loads(line) for line in (tmp_path / LOG).read_text().splitlines()]
    assert any(set(note["recipients"]) >= {"manager", "manager2"} for note in told), told


async def test_a_graph_can_use_the_plugin_node_function(api: Api) -> None:
    definition = {
        "id": "count-words",
        "nodes": [{"id": "count", "fn": "example.count_words"}, {"id": "done", "kind": "end"}],
        "edges": [{"from": "count", "to": "done"}],
    }
    created = await api.http.post("/graph/create", json=definition, headers=api.as_("admin"))
    assert created.status_code == 201, created.text
    done = await finished(api, await run(api, "count-words", {"text": "the AI proposes, a human decides"}))
    assert done["status"] == "COMPLETED", done
    assert done["data"]["word_count"] == 6
    assert "Counted 6 words" in done["logs"]
