"""The processes `countersign up` runs, and their supervision.

Children are separate processes, so one crash is visible and the others keep running: a child that
exits is started again (the worker exits with 3 when its watchdog finds it stalled, for exactly this),
after a backoff, and `up` gives up only on a crash loop (see RestartPolicy). They stop in reverse
start order, gateway first, Temporal last, so nothing in flight loses its server.
"""

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from countersign.models.errors import CountersignError

STOP_TIMEOUT = 15.0


class StackError(CountersignError, RuntimeError):
    """Why `up` stops: a check before anything started (preflight.py), or a child that will not run."""


@dataclass(frozen=True)
class RestartPolicy:
    """When `up` starts a child that exited again, and when it stops trying.

    The wait starts at `first` and doubles with each exit, up to `most`, so a child that cannot run does
    not spin; it goes back to `first` once the child had run `healthy_after` seconds, so a worker that
    stalls once a day is back within a second. A child that exits within `quick_exit` seconds of its
    start never got going: after `crash_loop` such exits in a row (about 15 s of waits, plus five start-
    ups) the cause is not transient (a bad setting, a port taken, a broken install, a corrupt database),
    so `up` stops everything and exits non-zero with the child's last log lines rather than restart it
    for ever. A child that dies later, however often, is always restarted.
    """

    first: float = 1.0
    most: float = 30.0
    healthy_after: float = 60.0
    quick_exit: float = 10.0
    crash_loop: int = 5

    def after_exit(self, child: "Child", ran: float) -> float | None:
        """How long to wait before starting `child` again, after it ran `ran` seconds; None: give up."""
        if ran >= self.healthy_after:
            child.next_wait = None
        child.quick_exits = child.quick_exits + 1 if ran < self.quick_exit else 0
        if child.quick_exits >= self.crash_loop:
            return None
        wait = self.first if child.next_wait is None else child.next_wait
        child.next_wait = min(wait * 2, self.most)
        return wait


@dataclass
class Child:
    """One supervised process and its restart state."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    quick_exits: int = 0
    next_wait: float | None = None  # None: the policy's first
    restart_at: float | None = None  # set while it waits to be started again

    def start(self) -> None:
        self.process = _spawn(self.args, self.log, self.env)
        self.started = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def note(self, line: str) -> None:
        """A line in the child's own log, where whoever reads it looks for why it restarted."""
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"{stamp} countersign up: {line}\n")

    def tail(self, lines: int = 5) -> str:
        try:
            with self.log.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def describe_exit(name: str, code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == 3 and name == "worker":
        return "exited with 3 (its watchdog found it stalled)"
    return f"exited with {code}"


@dataclass
class Supervisor:
    """Children in start order (Temporal, worker, gateway); `check` restarts those that exited."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    say: Callable[[str], None] = print
    children: list[Child] = field(default_factory=list)

    def add(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        return child

    def check(self, now: float | None = None) -> None:
        """Start again each child whose wait is over, schedule each that exited; StackError on a crash
        loop."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.start()
                    child.note(f"started again (pid {child.pid})")
                    self.say(f"{child.name} restarted (pid {child.pid})")
                continue
            code = child.process.poll() if child.process is not None else None
            if code is None:
                continue
            self._exited(child, code, now - child.started, now)

    def _exited(self, child: Child, code: int, ran: float, now: float) -> None:
        what = describe_exit(child.name, code)
        wait = self.policy.after_exit(child, ran)
        if wait is None:
            child.note(f"pid {child.pid} {what} after {ran:.1f}s; a crash loop: giving up")
            raise StackError(
                f"the {child.name} exited within {self.policy.quick_exit:g}s of starting "
                f"{child.quick_exits} times in a row (last: {what}), so it is not going to start; "
                f"stopping everything. The end of {child.log}:\n{child.tail()}"
            )
        child.restarts += 1
        child.restart_at = now + wait
        line = f"pid {child.pid} {what} after {ran:.1f}s; restarting in {wait:g}s (restart {child.restarts})"
        child.note(line)
        self.say(f"{child.name} (pid {child.pid}) {what} after {ran:.1f}s; restarting in {wait:g}s")

    def stop(self) -> None:
        """Stop the running children in reverse start order: the gateway, then the worker, then Temporal."""
        _stop([child.process for child in self.children if child.process is not None])


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        # Own process group: Ctrl-C reaches us once, and we stop children in order ourselves.
        return subprocess.Popen(  # noqa: S603 (our own argv, no shell)
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """Stop children in reverse start order: the gateway, then the worker, then Temporal."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
