"""A local HTTP server that speaks the part of Slack's Web API Countersign uses (chat.postMessage,
chat.update, chat.postEphemeral, views.open), on 127.0.0.1 in a thread. It records every call (method,
arguments, the bot token it came with) and answers as Slack does: `{"ok": true, "channel": ..., "ts": ...}`,
a DM's channel being a `D…` id of its own; `{"ok": false, "error": ...}` for a channel it is told is
gone, or for the next answers queued for a channel (`failures`), with Retry-After for a rate limit.

Also signs interaction payloads exactly as Slack does (`sign`), for tests and the benchmark."""

import hashlib
import hmac
import http.server
import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    token: str
    answer: dict[str, Any]  # what the fake answered

    @property
    def blocks(self) -> list[dict[str, Any]]:
        blocks = self.args.get("blocks") or []
        parsed: list[dict[str, Any]] = json.loads(blocks) if isinstance(blocks, str) else blocks
        return parsed

    def button(self, action_id: str) -> dict[str, Any] | None:
        for block in self.blocks:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element.get("action_id") == action_id:
                    found: dict[str, Any] = element
                    return found
        return None


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.gone: set[str] = set()  # channels (or user ids) answered channel_not_found
        # Per channel (or user id), (HTTP status, error) answered to its next calls, in order.
        self.failures: dict[str, list[tuple[int, str]]] = {}
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if "json" in (self.headers.get("content-type") or ""):
                    args = json.loads(raw or b"{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                token = (self.headers.get("authorization") or "").removeprefix("Bearer ")
                status, answer, headers = fake._answer(self.path.rsplit("/", 1)[-1], args, token)
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        """What COUNTERSIGN_SLACK_API_URL is set to."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def _answer(
        self, method: str, args: dict[str, Any], token: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            status, answer, headers = self._reply(method, args)
            self.calls.append(Call(method, args, token, answer))
            return status, answer, headers

    def _reply(self, method: str, args: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        channel = str(args.get("channel", ""))
        if self.failures.get(channel):
            status, error = self.failures[channel].pop(0)
            headers = {"Retry-After": "1"} if status == 429 else {}
            return status, {"ok": False, "error": error}, headers
        if channel in self.gone:
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if method == "chat.postMessage":
            # A DM is posted with the user's id and lives in a D… channel of its own.
            where = "D" + channel[1:] if channel.startswith(("U", "W")) else channel
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            message = {"type": "message", "text": args.get("text"), "ts": ts, "team": "T0TEST"}
            return 200, {"ok": True, "channel": where, "ts": ts, "message": message}, {}
        if method == "chat.update":
            return 200, {"ok": True, "channel": channel, "ts": args.get("ts"), "text": args.get("text")}, {}
        if method == "chat.postEphemeral":
            return 200, {"ok": True, "message_ts": f"{int(time.time())}.{next(self._ts):06d}"}, {}
        if method == "views.open":
            return 200, {"ok": True, "view": {"id": f"V{next(self._ts)}"}}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}

    def updated(self) -> set[tuple[str, str]]:
        """(channel, ts) of every message chat.update reached."""
        return {(str(c.args.get("channel")), str(c.args.get("ts"))) for c in self.of("chat.update")}

    def of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def posted_for(self, workflow_id: str) -> list[Call]:
        """The decision messages posted for a request (their buttons name it)."""
        return [
            c
            for c in self.of("chat.postMessage")
            if any(workflow_id in json.dumps(b) for b in c.blocks if b.get("type") == "actions")
        ]

    def __enter__(self) -> "FakeSlack":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with `body`: `v0=` HMAC-SHA256 of `v0:<timestamp>:<body>`."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def form(payload: dict[str, Any]) -> bytes:
    """An interaction as Slack posts it: a form whose `payload` field is the JSON."""
    return urlencode({"payload": json.dumps(payload)}).encode()


def block_action(user: str, posted: Call, action_id: str, trigger: str = "1337.42.abcdef") -> dict[str, Any]:
    """A click on a button of a message the fake posted."""
    answer = posted.answer
    button = posted.button(action_id)
    assert button is not None, f"no {action_id} button"
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0TEST"},
        "api_app_id": "A0TEST",
        "token": "legacy-verification-token",
        "team": {"id": "T0TEST", "domain": "countersign-test"},
        "trigger_id": trigger,
        "response_url": "https://hooks.slack.invalid/actions/T0TEST/1/x",
        "container": {"type": "message", "message_ts": answer["ts"], "channel_id": answer["channel"]},
        "channel": {"id": answer["channel"], "name": "directmessage"},
        "message": {"type": "message", "ts": answer["ts"], "text": posted.args.get("text")},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "countersign_decide",
                "value": button.get("value"),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_submission(user: str, opened: Call, reason: str) -> dict[str, Any]:
    """The reason modal the gateway opened (`opened`: its views.open call), submitted with `reason`."""
    view = opened.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    return {
        "type": "view_submission",
        "team": {"id": "T0TEST", "domain": "countersign-test"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0TEST"},
        "api_app_id": "A0TEST",
        "trigger_id": "1338.42.abcdef",
        "view": {
            "id": "V0TEST",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}},
        },
    }
