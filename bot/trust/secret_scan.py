"""The secret scan: what a run's diff must not add before it is proposed.

Besides token shapes and secret-looking assignments, it looks for the bot's own secret values in
every form `mendbot.trust.redact.secret_forms` lists, and for values split across lines (string
concatenation, a wrapped base64 or hex dump). Findings name the place and the kind of secret,
never the secret or any part of it, because they are posted where the proposal is discussed.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator

import msgspec

from mendbot.trust.redact import secret_forms

__all__ = ["scan_for_secrets"]

_TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Discord bot token", re.compile(r"\b[MNO][A-Za-z\d_-]{23,27}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,40}")),
    ("Discord webhook URL", re.compile(r"discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z\d_-]{20,}")),
    ("Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z\d_-]{20,}")),
    ("OpenAI API key", re.compile(r"\bsk-(?!ant-)(?:proj-)?[A-Za-z\d_-]{20,}")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z\d]{30,}|github_pat_[A-Za-z\d_]{30,})")),
    ("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z\d-]{10,}")),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    ("JSON web token", re.compile(r"\beyJ[A-Za-z\d_-]{10,}\.eyJ[A-Za-z\d_-]{10,}\.[A-Za-z\d_-]{10,}")),
    ("private key block", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY( BLOCK)?-----")),
)

# `name = "value"`, `name: str = 'value'`, `"name": "value"`, `NAME=value` (.env), `name: value` (YAML).
_ASSIGNMENT = re.compile(
    r"""(?P<name>[A-Za-z_][\w.-]*)["']?\s*(?::\s*[A-Za-z_][\w\[\]., |]*?)?\s*(?::=|=>|=|:)\s*"""
    r"""(?:(?P<quote>["'`])(?P<quoted>[^"'`\s]{16,})(?P=quote)|(?P<bare>[^"'`\s#,;()]{16,})\s*(?:\#.*)?$)"""
)
_SECRET_NAME = re.compile(
    r"(?:^|[_.-])(?:token|secret|passw(?:or)?d|pwd|api[_-]?key|apikey|private[_-]?key|access[_-]?key|key"
    r"|credentials?|auth)$",
    re.I,
)
_PLACEHOLDER = re.compile(r"example|sample|dummy|placeholder|changeme|your[_-]|xxxx|<|\$\{|\{\{|\*\*\*", re.I)
_MIN_ENTROPY = 3.5  # bits per character: random base64/hex sits near 4-6, words and identifiers lower

_ENV_FILE = re.compile(r"(?:^|/)\.env(?:\.[\w-]+)?$")
_ENV_TEMPLATE = re.compile(r"\.(?:example|sample|template|dist|defaults?)$")
_KEY_FILE = re.compile(r"(?:^|/)(?:id_(?:rsa|dsa|ecdsa|ed25519)|\.netrc|\.pgpass)$|\.(?:pem|p12|pfx|key)$")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")
# Where code splits a value over lines, what joins the pieces stands at the line breaks (whitespace,
# quotes, `+` and `\` continuations, parentheses, commas) or between two string literals on a line
# (`"ab" + "cd"`, `"ab" "cd"`). Only those are dropped to rejoin them: dropping the same characters
# anywhere would merge `"sk-ant-" + make(rng, 95)` or `("sk-ant-", "ghp_", "word…")` into a token
# shape. A `+` is concatenation only beside whitespace, a quote or a parenthesis; beside a letter it
# is data (standard base64).
_LINE_ENDS = re.compile(r"""^(?:[\s"'`\\(),]|\+(?=[\s"'`(]))+|(?:[\s"'`\\(),]|(?<=[\s"'`)])\+)+$""")
_LITERAL_JUNCTION = re.compile(r"""["'`][\s+]*["'`]""")


def _rejoinable(line: str) -> str:
    """`line` as a piece of a value split over lines: its ends and its string-literal junctions dropped."""
    return _LINE_ENDS.sub("", _LITERAL_JUNCTION.sub("", line))


class _Known(msgspec.Struct, frozen=True):
    """The bot's own secret values: every form of each as one pattern, and the kind each form is."""

    kinds: dict[str, str]
    pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, secrets: Iterable[str]) -> _Known:
        kinds: dict[str, str] = {}
        for secret in secrets:
            for form, encoding in secret_forms(secret).items():
                kinds.setdefault(form, f"a secret value of this bot ({encoding})")
        # Longest first, so a form that starts another form's text does not hide the rest of it.
        ordered = sorted(kinds, key=len, reverse=True)
        return cls(kinds, re.compile("|".join(map(re.escape, ordered))) if ordered else None)


def _matches(text: str, known: _Known) -> Iterator[tuple[str, re.Match[str]]]:
    """(kind, match) for each of the bot's secrets and each token shape in `text`."""
    if known.pattern is not None:
        for match in known.pattern.finditer(text):
            yield known.kinds[match.group()], match
    for kind, pattern in _TOKEN_PATTERNS:
        for match in pattern.finditer(text):
            yield kind, match


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _looks_random(value: str) -> bool:
    return (
        any(ch.isdigit() for ch in value)
        and any(ch.isalpha() for ch in value)
        and not _PLACEHOLDER.search(value)
        and _entropy(value) >= _MIN_ENTROPY
    )


def _scan_line(line: str, known: _Known) -> list[str]:
    kinds = list(dict.fromkeys(kind for kind, _ in _matches(line, known)))
    if kinds:
        return kinds
    for match in _ASSIGNMENT.finditer(line):
        value = match.group("quoted") or match.group("bare")
        if _SECRET_NAME.search(match.group("name")) and value and _looks_random(value):
            return [f"high-entropy value assigned to {match.group('name')!r}"]
    return []


def _run_findings(path: str, run: list[tuple[int, str]], known: _Known, found: list[str]) -> list[str]:
    """Findings that show only once a run of consecutive added lines (number, text) is rejoined.

    A secret is reported at the line it starts on; one already `found` there is not repeated.
    """
    seen = set(found)
    findings: list[str] = []

    def report(line_no: int, kind: str, how: str = "") -> None:
        place = f"{path}:{line_no}: {kind}"
        if place not in seen:
            seen.add(place)
            findings.append(place + how)

    pieces: list[str] = []
    starts: list[int] = []
    offset = 0
    for line_no, text in run:
        piece = _rejoinable(text)
        for kind, _ in _matches(piece, known):
            report(line_no, kind)
        pieces.append(piece)
        starts.append(offset)
        offset += len(piece)

    def line_at(position: int) -> int:
        # A line that rejoins as nothing shares its start with the next one: take the last.
        return run[bisect_right(starts, position) - 1][0]

    for kind, match in _matches("".join(pieces), known):
        first = line_at(match.start())
        if first != line_at(match.end() - 1):
            # No line range: a greedy pattern may run on into the code after the secret.
            report(first, kind, ", split across lines")
    return findings


def _flag_file(path: str) -> str | None:
    if _ENV_FILE.search(path) and not _ENV_TEMPLATE.search(path):
        return (
            f"{path}: adds an environment file; secrets belong in the deployment's .env, not the repository"
        )
    if _KEY_FILE.search(path):
        return f"{path}: adds a key or credentials file"
    return None


def scan_for_secrets(diff_text: str, secrets: Iterable[str] = ()) -> list[str]:
    """Findings ("path:line: what") for secrets the diff ADDS; removed and context lines are ignored.

    Flags the bot's own `secrets` in any form `mendbot.trust.redact.secret_forms` lists (plain, base64, hex,
    percent-encoded), token-shaped strings (Discord, Anthropic, OpenAI, GitHub, Slack, AWS, Google,
    JWT), private key blocks, high-entropy values assigned to names like token/secret/key/password,
    and added `.env` or key files. Each run of consecutive added lines in a file is also rejoined
    (whitespace, quotes, `+`, `\\`, parentheses and commas dropped at the line breaks and between
    string literals), so a value split over lines or literals is found at the line it starts on. A
    finding names the place and the kind, never the secret or any part of it.
    """
    known = _Known.of(secrets)
    findings: list[str] = []
    run: list[tuple[int, str]] = []  # the current run of consecutive added lines: (line number, text)
    path = "?"
    line_no = 0
    in_hunk = False
    for line in diff_text.splitlines():
        if in_hunk and line.startswith("+"):
            findings.extend(f"{path}:{line_no}: {kind}" for kind in _scan_line(line[1:], known))
            run.append((line_no, line[1:]))
            line_no += 1
            continue
        if run:
            findings.extend(_run_findings(path, run, known, findings))
            run = []
        if in_hunk and line[:1] in (" ", "-", "\\"):
            line_no += line[:1] == " "
            continue
        hunk = _HUNK.match(line)
        if hunk:
            in_hunk, line_no = True, int(hunk.group(1))
            continue
        # Anything else is a file header: `diff --git`, `new file mode`, `+++ b/path`, `rename to`.
        in_hunk = False
        if line.startswith("diff --git "):
            parts = line.split(" b/", 1)
            path = parts[1] if len(parts) == 2 else "?"
        elif line.startswith("+++ "):
            target = line[4:].strip()
            if target != "/dev/null":
                path = target[2:] if target.startswith("b/") else target
        elif line.startswith(("new file mode", "rename to ", "copy to ")):
            if not line.startswith("new file mode"):
                path = line.split(" to ", 1)[1].strip()
            flagged = _flag_file(path)
            if flagged:
                findings.append(flagged)
    if run:
        findings.extend(_run_findings(path, run, known, findings))
    return list(dict.fromkeys(findings))
