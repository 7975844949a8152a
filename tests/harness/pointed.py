"""`python -m tests.harness.pointed API_URL GATEWAY_URL -- MENDBOT_ARGS…`: the real `mendbot` entry point
in this process, with discord.py pointed at a loopback Discord another process runs
(`bot.trust.loopback_discord`)."""

from __future__ import annotations

import faulthandler
import signal
import sys

from bot.__main__ import main as mendbot
from bot.trust.loopback_discord import pointed_at

__all__ = ["main"]


def main(argv: list[str]) -> int:
    # SIGUSR1 prints every thread's Python stack to stderr and goes on: how a test sees where a bot hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if len(argv) < 3 or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    with pointed_at(argv[0], argv[1]):
        return mendbot(argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
