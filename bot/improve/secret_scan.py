"""The secret scan: what a run's diff must not add before it is proposed.

Findings name the place and the kind of secret, never the secret itself, because they are
posted where the proposal is discussed.
"""

from __future__ import annotations

import math
import re
from collections import Counter

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
    r"""(?:(?P<quote>["'`])(?P<quoted>[^"'`\s]{16,})(?P=quote)|(?P<bare>[^"'`\s#,;]{16,})\s*(?:\#.*)?$)"""
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


def _scan_line(line: str) -> list[str]:
    kinds = [kind for kind, pattern in _TOKEN_PATTERNS if pattern.search(line)]
    if kinds:
        return kinds
    for match in _ASSIGNMENT.finditer(line):
        value = match.group("quoted") or match.group("bare")
        if _SECRET_NAME.search(match.group("name")) and value and _looks_random(value):
            return [f"high-entropy value assigned to {match.group('name')!r}"]
    return []


def _flag_file(path: str) -> str | None:
    if _ENV_FILE.search(path) and not _ENV_TEMPLATE.search(path):
        return (
            f"{path}: adds an environment file; secrets belong in the deployment's .env, not the repository"
        )
    if _KEY_FILE.search(path):
        return f"{path}: adds a key or credentials file"
    return None


def scan_for_secrets(diff_text: str) -> list[str]:
    """Findings ("path:line: what") for secrets the diff ADDS; removed and context lines are ignored.

    Flags token-shaped strings (Discord, Anthropic, OpenAI, GitHub, Slack, AWS, Google, JWT), private key
    blocks, high-entropy values assigned to names like token/secret/key/password, and added `.env` or
    key files. A finding names the place and the kind, never the secret itself.
    """
    findings: list[str] = []
    path = "?"
    line_no = 0
    in_hunk = False
    for line in diff_text.splitlines():
        if in_hunk and line[:1] in (" ", "-", "\\"):
            line_no += line[:1] == " "
            continue
        if in_hunk and line.startswith("+"):
            findings.extend(f"{path}:{line_no}: {kind}" for kind in _scan_line(line[1:]))
            line_no += 1
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
    return list(dict.fromkeys(findings))
