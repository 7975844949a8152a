"""Redaction: secrets never reach a sink, and nothing unbounded does either.

Token-shaped strings (Discord bot tokens, Anthropic/OpenAI keys, GitHub tokens, bearer and
basic credentials, AWS keys, private key blocks) are replaced wherever they occur; values
under keys named like token/secret/key/password/authorization are replaced whole. Long
strings, long lists and deep nesting are capped.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "MAX_STRING", "REDACTED", "redact", "redact_text"]

REDACTED = "[redacted]"
MAX_STRING = 2000
MAX_ITEMS = 50
MAX_DEPTH = 4

_TOKENS = re.compile(
    r"[MNO][A-Za-z\d_-]{23,27}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,40}"  # Discord bot token
    r"|mfa\.[A-Za-z\d_-]{20,}"  # Discord user MFA token
    r"|sk-(?:ant-)?[A-Za-z\d_-]{20,}"  # Anthropic / OpenAI keys
    r"|gh[pousr]_[A-Za-z\d]{30,}|github_pat_[A-Za-z\d_]{30,}"  # GitHub tokens
    r"|xox[abprs]-[A-Za-z\d-]{10,}"  # Slack
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|(?i:bearer|basic|token)\s+[A-Za-z\d._~+/=-]{16,}"  # Authorization header values
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
)
_SECRET_KEY = re.compile(
    r"(?:^|[_.-])(?:token|secret|passw(?:or)?d|pwd|api[_-]?key|apikey|authorization|auth|cookie|session"
    r"|private[_-]?key|key|credentials?)$",
    re.I,
)


def redact_text(text: str, limit: int = MAX_STRING) -> str:
    if len(text) > limit * 4:  # bound the regex work on huge inputs before scanning
        text = text[: limit * 4]
    cleaned = _TOKENS.sub(REDACTED, text)
    if len(cleaned) > limit:
        cleaned = cleaned[:limit] + f"… [{len(cleaned) - limit} more chars]"
    return cleaned


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of `value` safe to store: secrets replaced, size and depth bounded."""
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS} more keys"
                break
            name = str(key)[:100]
            out[name] = REDACTED if _SECRET_KEY.search(name) and item else redact(item, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        capped = [redact(item, depth + 1) for item in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            capped.append(f"… {len(items) - MAX_ITEMS} more items")
        return capped
    return redact_text(repr(value), 200)
