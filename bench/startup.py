"""Start-up benchmark: process start to bot ready in the playground, and idle memory.

Prints `play_ready_s` (median of several starts) and `idle_rss_mb` (resident memory of the
ready, idle playground process).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = 5


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def one_start(workdir: Path) -> tuple[float, float]:
    (workdir / "config.yaml").write_text("health: {enabled: false}\n")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "play"],
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()
    ready = time.perf_counter() - started
    if "playground ready" not in line:
        process.kill()
        raise RuntimeError(f"unexpected first line: {line!r}")
    time.sleep(1.0)  # idle
    rss = _rss_mb(process.pid)
    process.stdin.close()
    process.wait(timeout=30)
    return ready, rss


def main() -> None:
    readies, rsses = [], []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            ready, rss = one_start(Path(tmp))
        readies.append(ready)
        rsses.append(rss)
    print(f"play_ready_s {statistics.median(readies):.2f} s")
    print(f"idle_rss_mb {statistics.median(rsses):.1f} MB")


if __name__ == "__main__":
    main()
