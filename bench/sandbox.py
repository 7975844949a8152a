"""Sandbox benchmark: what running worktree code inside bubblewrap costs.

Prints
- `sandbox_overhead_ms`: the median extra wall time of one check (`python -c pass`, run the way the
  verify gate runs a check) inside the sandbox over the same check outside it, from interleaved runs;
- `check_throughput_ratio`: sandboxed / unsandboxed wall time of the project's own
  `pytest -q -m "not cli"` subset, run in a copy of the repository (as a run's worktree would be),
  in interleaved rounds.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mendbot.kernel.process import run_process
from mendbot.trust.sandbox import Sandbox

REPO = Path(__file__).resolve().parent.parent
RUNS = 30
SUITE_ROUNDS = 2
SUITE = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not cli"]


def _copy_of_repo(dest: Path) -> Path:
    """The project's files (tracked and new, minus ignored) in a fresh repository, like a worktree."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench copy"]):
        subprocess.run(["git", *identity, *args], cwd=dest, check=True, capture_output=True)
    # The suite's fresh-clone test reuses the checkout's virtualenv through `.venv` (ignored by git).
    (dest / ".venv").symlink_to(REPO / ".venv")
    return dest


def _plain_env(worktree: Path, sandboxed_env: dict[str, str]) -> dict[str, str]:
    """The same environment outside the sandbox (its own private HOME and TMPDIR)."""
    env = dict(sandboxed_env)
    home = Path(tempfile.mkdtemp(prefix="bench-home-"))
    env.update(HOME=str(home), TMPDIR=str(home), PYTHONPATH=str(worktree))
    return env


async def _timed(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> float:
    result = await run_process(argv, cwd=cwd, env=env, timeout_s=timeout_s)
    if result.code != 0:
        raise RuntimeError(f"{argv[-3:]} failed ({result.code}):\n{result.output[-2000:]}")
    return result.duration_s


async def main() -> None:
    sandbox = Sandbox()
    await sandbox.probe()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as temp:
        worktree = _copy_of_repo(Path(temp) / "repo")
        async with sandbox.jail(worktree, git_dir=worktree / ".git") as jail:
            inside_env = jail.environment()
            outside_env = _plain_env(worktree, inside_env)
            check = [sys.executable, "-c", "pass"]
            inside, outside = [], []
            for _ in range(RUNS):  # interleaved, so drift on a shared machine hits both alike
                outside.append(await _timed(check, worktree, outside_env, 30))
                inside.append(await _timed(jail.command(check, inside_env, wall_s=30), worktree, {}, 30))
            overhead_ms = (statistics.median(inside) - statistics.median(outside)) * 1000
            print(f"sandbox_overhead_ms {overhead_ms:.1f} ms")

            plain = confined = 0.0
            for _ in range(SUITE_ROUNDS):
                plain += await _timed(SUITE, worktree, outside_env, 1800)
                confined += await _timed(jail.command(SUITE, inside_env, wall_s=1800), worktree, {}, 1800)
            print(f"check_throughput_ratio {confined / plain:.3f} ratio")


if __name__ == "__main__":
    asyncio.run(main())
