"""A local HTTP server speaking the OpenAI (chat completions, also Azure's deployment path) and Anthropic
(messages) wire formats, answering from a script, so the real `openai` and `anthropic` SDKs can be
driven through everything a provider does: answers, errors, 429s, garbage.

Each request takes the next scripted `Reply`; an exhausted script answers 500 "script exhausted", so a
test that makes more calls than it expected sees it. Every request body and header is recorded.
With a `responder` (a function of the recorded request), requests the script does not cover are
answered by it instead: for fault mixes drawn per request (the chaos tests).
"""

import asyncio
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response

OPENAI_MODEL = "gpt-fake-1"
ANTHROPIC_MODEL = "claude-fake-1"


@dataclass
class Reply:
    status: int = 200
    # A dict is sent as JSON; a str is sent as is (for bodies that are not JSON at all).
    body: dict[str, Any] | str = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


def openai_answer(
    content: dict[str, Any] | str | None,
    *,
    finish_reason: str = "stop",
    refusal: str | None = None,
    tokens: tuple[int, int] = (120, 80),
) -> Reply:
    text = json.dumps(content) if isinstance(content, dict) else content
    return Reply(
        body={
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_764_000_000,
            "model": OPENAI_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": refusal},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": tokens[0],
                "completion_tokens": tokens[1],
                "total_tokens": sum(tokens),
            },
        }
    )


def anthropic_answer(
    tool_input: dict[str, Any] | None = None,
    *,
    text: str | None = None,
    tool_name: str = "propose_action",
    stop_reason: str = "tool_use",
    tokens: tuple[int, int] = (150, 90),
) -> Reply:
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "text", "text": text})
    if tool_input is not None:
        content.append({"type": "tool_use", "id": "toolu_fake01", "name": tool_name, "input": tool_input})
    return Reply(
        body={
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_MODEL,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
        }
    )


def openai_error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status=status,
        body={"error": {"message": message, "type": "fake_error", "param": None, "code": None}},
        headers=headers or {},
    )


def anthropic_error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    kind = {401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(
        status, "api_error"
    )
    return Reply(
        status=status,
        body={"type": "error", "error": {"type": kind, "message": message}},
        headers=headers or {},
    )


class FakeLLM:
    def __init__(self, responder: Callable[[Recorded], Reply] | None = None) -> None:
        self._replies: deque[Reply] = deque()
        # Answers what the script does not: called (under the lock) with each such request.
        self.responder = responder
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.add_api_route("/v1/chat/completions", self._answer, methods=["POST"])
        self.app.add_api_route(
            "/openai/deployments/{deployment}/chat/completions", self._answer, methods=["POST"]
        )
        self.app.add_api_route("/v1/messages", self._answer, methods=["POST"])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def remaining(self) -> int:
        return len(self._replies)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _answer(self, request: Request) -> Response:
        raw = await request.body()
        recorded = Recorded(
            request.url.path, dict(request.headers), json.loads(raw or b"{}"), time.monotonic()
        )
        self.requests.append(recorded)
        with self._lock:
            reply = self._replies.popleft() if self._replies else None
            if reply is None and self.responder is not None:
                reply = self.responder(recorded)
        if reply is None:
            reply = openai_error(500, "script exhausted")
        if reply.delay:
            await asyncio.sleep(reply.delay)
        payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        return Response(
            payload, status_code=reply.status, headers=reply.headers, media_type="application/json"
        )

    def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="error", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake LLM server did not start")
            time.sleep(0.01)

    def vendor_env(self, openai_key: str, anthropic_key: str) -> dict[str, str]:
        """The SDKs' own variables, pointing both vendors at this server: proof they are honoured."""
        return {
            "OPENAI_API_KEY": openai_key,
            "OPENAI_BASE_URL": f"{self.url}/v1",
            "ANTHROPIC_API_KEY": anthropic_key,
            "ANTHROPIC_BASE_URL": self.url,
            # Would take precedence over ANTHROPIC_API_KEY if the machine had one.
            "ANTHROPIC_AUTH_TOKEN": "",
        }

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)


def follow_up_plan(**overrides: Any) -> dict[str, Any]:
    """A valid answer, shaped as strict mode would produce it, for the tour's follow-up request."""
    answer: dict[str, Any] = {
        "request_type": "GENERAL",
        "fields": {
            "amount": None,
            "currency": None,
            "quantity": None,
            "item": None,
            "days": None,
            "start_date": None,
            "severity": None,
            "counterparty": "ABC Logistics",
            "email": "sales@abclogistics.com",
            "topic": "pricing",
        },
        "summary": "Riley wants to follow up with ABC Logistics about pricing.",
        "rationale": "The text names the recipient's address and the topic, so an email fits.",
        "action": {
            "tool": "send_email",
            "args": {
                "to": "sales@abclogistics.com",
                "subject": "Following up on pricing",
                "body": "Hello ABC Logistics team,\n\nCould you share an update on pricing?\n\nRiley",
                "cc": [],
            },
        },
        "confidence": 0.86,
    }
    answer.update(overrides)
    return answer


def laptops_plan() -> dict[str, Any]:
    """A valid procurement answer over the seed 001 threshold."""
    return follow_up_plan(
        request_type="PROCUREMENT",
        fields={
            **follow_up_plan()["fields"],
            "amount": 52000,
            "currency": "USD",
            "quantity": 40,
            "item": "laptops",
            "counterparty": "Dell",
            "email": None,
            "topic": None,
        },
        summary="Buy 40 laptops from Dell for USD 52,000.",
        action={
            "tool": "create_purchase_order",
            "args": {"vendor": "Dell", "item": "laptops", "quantity": 40, "amount": 52000, "currency": "USD"},
        },
    )


def openai_tool_calls(
    *calls: tuple[str, dict[str, Any] | str], text: str | None = None, tokens: tuple[int, int] = (60, 20)
) -> Reply:
    """An answer made of function tool calls `(name, arguments)`; a str is sent as the arguments text
    as is (for arguments that are not valid JSON). Ids are `call_<n>` in order, unique per answer."""
    reply = openai_answer(text, finish_reason="tool_calls", tokens=tokens)
    assert isinstance(reply.body, dict)
    reply.body["choices"][0]["message"]["tool_calls"] = [
        {
            "id": f"call_{next(_CALL_IDS)}",
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        for name, args in calls
    ]
    return reply


def anthropic_tool_uses(
    *calls: tuple[str, dict[str, Any]], text: str | None = None, tokens: tuple[int, int] = (70, 25)
) -> Reply:
    """An answer made of `tool_use` blocks `(name, input)`, with unique ids."""
    reply = anthropic_answer(text=text, stop_reason="tool_use", tokens=tokens)
    assert isinstance(reply.body, dict)
    reply.body["content"] += [
        {"type": "tool_use", "id": f"toolu_{next(_CALL_IDS):04d}", "name": name, "input": args}
        for name, args in calls
    ]
    return reply


_CALL_IDS = itertools.count(1)
