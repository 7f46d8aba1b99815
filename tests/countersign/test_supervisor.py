"""`countersign up`'s restart policy, and its supervisor on real (small) child processes: a child that
keeps dying at start is a crash loop and stops `up`; one that dies after running a while is restarted
however often. (tests/countersign/test_stack.py kills the real worker of a real stack.)"""

import re
import sys
import time
from pathlib import Path

import pytest

from countersign.stack.supervisor import Child, RestartPolicy, StackError, Supervisor, describe_exit


def test_waits_double_up_to_the_most_and_start_again_after_a_healthy_run() -> None:
    policy = RestartPolicy()  # 1 s doubling to 30 s; healthy after 60 s; 5 exits within 10 s: a loop
    child = Child("worker", [], Path("worker.log"))
    waits = [policy.after_exit(child, ran) for ran in (30, 12, 20, 15, 11, 40, 25)]
    assert waits == [1, 2, 4, 8, 16, 30, 30]  # dying later than 10 s after start is never a loop
    assert policy.after_exit(child, 3600) == 1  # a day's run, then a stall: back at once
    assert [policy.after_exit(child, 2) for _ in range(5)] == [2, 4, 8, 16, None]  # the fifth in 10 s
    assert child.quick_exits == 5


def test_one_run_past_the_quick_exit_window_breaks_a_crash_loop() -> None:
    policy = RestartPolicy()
    child = Child("gateway", [], Path("api.log"))
    assert [policy.after_exit(child, 1) for _ in range(4)] == [1, 2, 4, 8]
    assert policy.after_exit(child, 10.5) == 16 and child.quick_exits == 0
    assert [policy.after_exit(child, 1) for _ in range(4)] == [30, 30, 30, 30]


@pytest.mark.parametrize(
    ("name", "code", "said"),
    [
        ("worker", -9, "was killed by SIGKILL"),
        ("worker", 3, "exited with 3 (its watchdog found it stalled)"),
        ("gateway", 3, "exited with 3"),
        ("Temporal dev server", 1, "exited with 1"),
    ],
)
def test_exits_are_described(name: str, code: int, said: str) -> None:
    assert describe_exit(name, code) == said


def supervise(supervisor: Supervisor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            supervisor.check()
            time.sleep(0.02)
    finally:
        supervisor.stop()


def test_a_child_that_keeps_dying_at_start_stops_everything_with_its_last_words(tmp_path: Path) -> None:
    lines: list[str] = []
    supervisor = Supervisor(RestartPolicy(first=0.01, most=0.04, crash_loop=3), say=lines.append)
    bystander = supervisor.add(
        Child("worker", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "w")
    )
    broken = supervisor.add(
        Child(
            "gateway",
            [
                sys.executable,
                "-c",
                "print('error: the policy file has no rules', flush=True); raise SystemExit(2)",
            ],
            tmp_path / "api.log",
        )
    )
    with pytest.raises(StackError) as gave_up:
        supervise(supervisor, 30)
    message = str(gave_up.value)
    assert message.startswith(
        "the gateway exited within 10s of starting 3 times in a row (last: exited with 2)"
    )
    assert message.endswith("a crash loop: giving up") and "error: the policy file has no rules" in message
    assert broken.restarts == 2 and len(lines) == 4  # two exits with a restart each, then the third
    assert re.fullmatch(r"gateway \(pid \d+\) exited with 2 after [\d.]+s; restarting in 0.01s", lines[0])
    assert re.fullmatch(r"gateway restarted \(pid \d+\)", lines[1]) and lines[2].endswith("in 0.02s")
    log = (tmp_path / "api.log").read_text()
    assert log.count("error: the policy file has no rules") == 3
    assert log.count("countersign up: started again (pid ") == 2
    # stop() ended the others, as `up` does before it exits non-zero.
    assert bystander.process is not None and bystander.process.poll() is not None


def test_a_child_that_runs_a_while_before_each_exit_is_restarted_for_ever(tmp_path: Path) -> None:
    lines: list[str] = []
    policy = RestartPolicy(first=0.01, quick_exit=0.25, healthy_after=0.25, crash_loop=2)
    supervisor = Supervisor(policy, say=lines.append)
    stalling = supervisor.add(
        Child(
            "worker",
            [sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(3)"],
            tmp_path / "w",
        )
    )
    supervise(supervisor, 3)  # no StackError: each run outlived the quick-exit window
    assert stalling.restarts >= 2
    exits = [line for line in lines if "exited with 3 (its watchdog found it stalled)" in line]
    assert len(exits) == stalling.restarts and all(line.endswith("restarting in 0.01s") for line in exits)
