"""Fault points: armed only by MENDBOT_FAILPOINTS, a no-op otherwise, and `kill` is a real SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from mendbot.kernel.failpoints import Failpoints


def test_an_unset_environment_arms_nothing_and_hits_are_no_ops() -> None:
    """Without MENDBOT_FAILPOINTS no point is armed and hitting one does nothing."""
    points = Failpoints.from_environ({})
    assert points.armed == {}
    points.hit("deploy.after_merge_recorded")


def test_the_variable_arms_named_points() -> None:
    """`a=kill,b=kill` arms both points, spaces and empty entries ignored."""
    points = Failpoints.from_environ({"MENDBOT_FAILPOINTS": " deploy.after_live_update=kill, ,x=kill"})
    assert points.armed == {"deploy.after_live_update": "kill", "x": "kill"}


@pytest.mark.parametrize("spec", ["deploy.after_live_update", "deploy.after_live_update=crash", "=kill"])
def test_a_malformed_entry_is_refused(spec: str) -> None:
    """A typo must not silently arm nothing: a missing or unknown action is a ValueError."""
    with pytest.raises(ValueError, match="MENDBOT_FAILPOINTS"):
        Failpoints.parse(spec)


def test_hitting_an_armed_kill_point_kills_the_process_with_sigkill() -> None:
    """An armed point ends the process there with SIGKILL: nothing after it runs."""
    code = (
        "from mendbot.kernel.failpoints import Failpoints\n"
        "points = Failpoints.parse('p=kill')\n"
        "points.hit('other')\n"
        "print('before', flush=True)\n"
        "points.hit('p')\n"
        "print('after', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL
    assert "before" in done.stdout
    assert "after" not in done.stdout


def test_a_raise_point_fails_the_step_with_an_injected_fault_while_armed() -> None:
    """`raise` (from the variable, or armed in process by a fire drill) makes the step fail with
    InjectedFault; disarmed, the same hit does nothing."""
    from mendbot.kernel.failpoints import InjectedFault

    points = Failpoints.from_environ({"MENDBOT_FAILPOINTS": "drill.probe=raise"})
    with pytest.raises(InjectedFault, match=r"drill\.probe"):
        points.hit("drill.probe")
    points.disarm("drill.probe")
    points.hit("drill.probe")
    points.arm("drill.probe", "raise")
    with pytest.raises(InjectedFault):
        points.hit("drill.probe")


def test_an_armed_term_point_sends_the_process_sigterm() -> None:
    """`term` stops the process the way a service manager does: SIGTERM, which its handler may drain."""
    code = (
        "import signal, sys\n"
        "from mendbot.kernel.failpoints import Failpoints\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('drained', flush=True), sys.exit(0)))\n"
        "Failpoints.parse('p=term').hit('p')\n"
        "print('not reached', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "drained" in done.stdout and "not reached" not in done.stdout
