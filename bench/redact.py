"""Redaction benchmark: what `Redactor.text` costs on a log line.

Prints one `name value unit` line (diagnostics go to stderr):

- `redact_us_per_line`: `Redactor.text` on a 200-character log line, with a redactor that knows
  three secrets shaped like the bot's (a Discord token, an Anthropic key, a GitHub token, all
  made up here), so each contributes its plain, hex, base64 and percent-encoded forms. The
  line holds none of them, the common case. Median of several rounds of many calls each.

Run from the repo root: `.venv/bin/python bench/redact.py`.
"""

from __future__ import annotations

import random
import statistics
import string
import sys
import time
from pathlib import Path

from sizes import sized  # bench/, the script's directory: before anything reads sys.argv

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mendbot.trust.redact import Redactor  # noqa: E402

ROUNDS = sized(7, 1)
CALLS = sized(20_000, 1_000)
SEED = 20240601
LINE = (
    "2024-06-01T12:00:00.123Z INFO mendbot.chat reply sent guild=1100000000000000000 "
    "channel=1100000000000000010 user=1100000000000001001 model=claude tokens_in=1532 "
    "tokens_out=120 duration_ms=812.4 ok"
).ljust(200, ".")


def _made_up(rng: random.Random, length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def _secrets(rng: random.Random) -> list[str]:
    urlsafe = string.ascii_letters + string.digits + "_-"
    discord = ".".join([_made_up(rng, 26, urlsafe), _made_up(rng, 6, urlsafe), _made_up(rng, 38, urlsafe)])
    anthropic = "sk-ant-api03-" + _made_up(rng, 95, urlsafe)
    github = "ghp_" + _made_up(rng, 36)
    return [discord, anthropic, github]


def redact_us_per_line() -> float:
    rng = random.Random(SEED)
    secrets = _secrets(rng)
    redactor = Redactor(secrets)
    text = redactor.text
    assert len(LINE) == 200 and text(LINE) == LINE
    assert all(secret not in text(f"{LINE} {secret}") for secret in secrets)
    rounds: list[float] = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            text(LINE)
        rounds.append((time.perf_counter() - started) / CALLS * 1e6)
    print(f"redact: rounds {', '.join(f'{value:.1f}' for value in rounds)} us", file=sys.stderr)
    return statistics.median(rounds)


def main() -> None:
    print(f"redact_us_per_line {redact_us_per_line():.1f} us", flush=True)


if __name__ == "__main__":
    main()
