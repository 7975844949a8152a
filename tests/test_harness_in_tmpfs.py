"""`make test`'s runner (tests/harness/in_tmpfs.py): the command runs with /tmp a tmpfs of its own where the
machine allows one, unseen outside it, and runs as it is, saying why, where it does not."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.harness import in_tmpfs

ROOT = Path(__file__).resolve().parent.parent
_SHOW_TMP = "grep ' /tmp ' /proc/self/mounts || echo 'no mount'; touch \"$MADE\" && echo made"


def _run(made: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The runner's run of a command that shows what /tmp is and makes the file `made` in it."""
    return subprocess.run(
        [sys.executable, "-m", "tests.harness.in_tmpfs", "sh", "-c", _SHOW_TMP],
        cwd=ROOT,
        env={**os.environ, **env, "MADE": str(made)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def _made() -> Path:
    return Path("/tmp") / f"made-inside-{uuid.uuid4().hex}"


def test_the_command_runs_on_a_tmpfs_of_its_own_where_it_can_and_as_it_is_elsewhere() -> None:
    reason = in_tmpfs.why_not()
    made = _made()
    done = _run(made, MENDBOT_TEST_TMPFS="")
    assert done.stdout.endswith("made\n"), done.stdout
    if reason is None:
        assert "mendbot-tests /tmp tmpfs" in done.stdout, done.stdout
        assert not done.stderr, done.stderr
        # Its own: what the command made in its /tmp is not in the /tmp outside it.
        assert not made.exists()
    else:
        assert done.stderr == f"tests: temporary files on the disk ({reason})\n"
        made.unlink()


def test_it_can_be_turned_off() -> None:
    made = _made()
    done = _run(made, MENDBOT_TEST_TMPFS="0")
    assert done.stderr == "tests: temporary files on the disk (MENDBOT_TEST_TMPFS=0)\n"
    assert done.stdout.endswith("made\n")
    made.unlink()  # made in the /tmp the runner was started in (FileNotFoundError otherwise)
