"""Redaction: secrets never reach a sink, and nothing unbounded does either.

Token-shaped strings (Discord bot tokens, Anthropic/OpenAI keys, GitHub tokens, bearer and
basic credentials, AWS keys, private key blocks) are replaced wherever they occur; values
under keys named like token/secret/key/password/authorization are replaced whole. Long
strings, long lists and deep nesting are capped.

A `Redactor` also knows the bot's actual secret values (built once in `main()` from the
settings) and replaces each of them in every form it can leave in: plain, base64 (standard
and URL-safe, padded or not, alone or inside a larger base64 blob), hex and percent-encoded.
`redact` and `redact_text` are for callers without one: token shapes only.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from mendbot.kernel.settings import Settings

__all__ = [
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_STRING",
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "Redactor",
    "redact",
    "redact_text",
    "secret_forms",
]

REDACTED = "[redacted]"
MAX_STRING = 2000
MAX_ITEMS = 50
MAX_DEPTH = 4
# A shorter value is not a credential, and looking for it would redact ordinary words (and its
# base64 pieces, a few characters long, would match inside unrelated blobs).
MIN_SECRET_LENGTH = 8
# `Redactor.text` remembers the scrubbed form of up to this many strings of at most this length.
_CACHED_LENGTH = 64
_CACHE_ENTRIES = 4096

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
# The longest head of a token shape that does not match yet (a Discord token needs 59 characters).
_TOKEN_HEAD = 64
_SECRET_KEY = re.compile(
    r"(?:^|[_.-])(?:token|secret|passw(?:or)?d|pwd|api[_-]?key|apikey|authorization|auth|cookie|session"
    r"|private[_-]?key|key|credentials?)$",
    re.I,
)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _inner_base64(raw: bytes, shift: int, encode: Callable[[bytes], bytes]) -> str:
    """The part of the base64 of `raw` that is the same whatever bytes surround it in a larger blob.

    In a blob, `raw` starts `shift` bytes (0, 1 or 2) into a 3-byte group. A base64 character
    stands for 6 bits, so only the characters whose bits lie wholly inside `raw` are fixed; the
    ones at either end also carry bits of the neighbouring bytes.
    """
    padded = b"\0" * shift + raw + b"\0" * (-(shift + len(raw)) % 3)
    encoded = encode(padded).decode("ascii")
    first = -(-8 * shift // 6)
    end = 8 * (shift + len(raw)) // 6
    return encoded[first:end]


def secret_forms(secret: str) -> dict[str, str]:
    """Each text form `secret` can take, mapped to the name of its encoding; empty if it is too short.

    Surrounding whitespace is not part of a credential and is dropped first. Where two encodings
    give the same text (a plain alphanumeric value is its own percent-encoding), the first name
    listed here wins: plain, hex, base64, URL-safe base64, percent-encoded.
    """
    secret = secret.strip()
    if len(secret) < MIN_SECRET_LENGTH:
        return {}
    raw = secret.encode("utf-8")
    found: list[tuple[str, str]] = [(secret, "plain"), (raw.hex(), "hex"), (raw.hex().upper(), "hex")]
    for name, encode in (("base64", base64.b64encode), ("URL-safe base64", base64.urlsafe_b64encode)):
        whole = encode(raw).decode("ascii")
        found += [(whole, name), (whole.rstrip("="), name)]
        found += [(_inner_base64(raw, shift, encode), name) for shift in range(3)]
    for percent in (quote(secret, safe=""), quote_plus(secret, safe="")):
        lower = _PERCENT_ESCAPE.sub(lambda escape: escape.group().lower(), percent)
        found += [(percent, "percent-encoded"), (lower, "percent-encoded")]
    forms: dict[str, str] = {}
    for form, name in found:
        if len(form) >= MIN_SECRET_LENGTH:
            forms.setdefault(form, name)
    return forms


def _scrub(text: str, limit: int | None, pattern: re.Pattern[str], head: int) -> str:
    """`text` with every match of `pattern` replaced, capped at `limit` characters (None: no cap).

    `head` is the longest piece of a secret that `pattern` would not match on its own.
    """
    if limit is None:
        return pattern.sub(REDACTED, text)
    scanned = text[: limit * 4]  # bound the regex work on huge inputs before scanning
    cleaned = pattern.sub(REDACTED, scanned)
    hidden = len(text) - len(scanned)
    if hidden:
        # The cut may have split a secret, and its head no longer matches: drop the text it could be in.
        hidden += min(head, len(cleaned))
        cleaned = cleaned[: max(0, len(cleaned) - head)]
    if len(cleaned) > limit:
        hidden += len(cleaned) - limit
        cleaned = cleaned[:limit]
    if hidden:
        cleaned += f"… [{hidden} more chars]"
    return cleaned


def _key_name(key: Any, text: Callable[[str, int], str]) -> tuple[str, bool]:
    """A dict key as stored (scrubbed, bounded) and whether it names a secret."""
    name = text(str(key), 100)
    return name, _SECRET_KEY.search(name) is not None


def _redact_value(
    value: Any, depth: int, text: Callable[[str, int], str], key: Callable[[Any], tuple[str, bool]]
) -> Any:
    # Exact types first: a record's values are almost all plain str, int, dict; subclasses (an enum
    # deriving from str, a bool) take the general branches below as before.
    kind = type(value)
    if kind is str:
        return text(value, MAX_STRING)
    if value is None or kind is int or kind is float:
        return value
    if isinstance(value, str):
        return text(value, MAX_STRING)
    if isinstance(value, (bool, int, float)):
        return value
    if depth >= MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for index, (name, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["…"] = f"{len(value) - MAX_ITEMS} more keys"
                break
            stored, secretish = key(name)
            out[stored] = REDACTED if secretish and item else _redact_value(item, depth + 1, text, key)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        capped = [_redact_value(item, depth + 1, text, key) for item in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            capped.append(f"… {len(items) - MAX_ITEMS} more items")
        return capped
    return text(repr(value), 200)


def redact_text(text: str, limit: int = MAX_STRING) -> str:
    """`text` with token-shaped strings replaced, capped at `limit` characters."""
    return _scrub(text, limit, _TOKENS, _TOKEN_HEAD)


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of `value` safe to store: token shapes and secret-named keys replaced, size bounded."""
    return _redact_value(value, depth, redact_text, functools.partial(_key_name, text=redact_text))


class Redactor:
    """Replaces the bot's own secret values, in any form, and token shapes with ``[redacted]``.

    Every form of every known value and the token shapes are one compiled regex, rebuilt only
    when a value is added, so a log line costs one scan.
    """

    _pattern: re.Pattern[str]
    _head: int

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        """Know `secrets`; None, empty and values under `MIN_SECRET_LENGTH` characters are skipped."""
        self._forms: dict[str, str] = {}
        for secret in secrets:
            if secret:
                self._forms.update(secret_forms(secret))
        self._compile()

    @classmethod
    def from_settings(cls, settings: Settings, also: Iterable[str] = ()) -> Redactor:
        """A redactor for the Discord, Anthropic and GitHub credentials that are set (empty is unset), and
        `also` (a bot's own: `mendbot.trust.host_files.bot_secrets`)."""
        return cls(
            [
                *(
                    secret.get_secret_value() if secret is not None else None
                    for secret in (settings.discord_token, settings.anthropic_api_key, settings.github_token)
                ),
                *also,
            ]
        )

    def add(self, secret: str) -> None:
        """Learn one more value at run time (a token minted after start-up); a short one is ignored."""
        forms = secret_forms(secret)
        if forms.keys() - self._forms.keys():
            self._forms.update(forms)
            self._compile()

    def text(self, text: str, limit: int | None = None) -> str:
        """`text` with known values and token shapes replaced; capped at `limit` characters if given.

        Short strings (option names, "slash", a user's few words) recur on every action; their
        scrubbed form is remembered until a secret is learnt, so recording one costs a lookup.
        """
        if len(text) > _CACHED_LENGTH or (limit is not None and limit < _CACHED_LENGTH):
            return _scrub(text, limit, self._pattern, self._head)
        cached = self._cache.get(text)
        if cached is None:
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.clear()
            cached = self._cache[text] = _scrub(text, None, self._pattern, self._head)
        return cached

    def value(self, value: Any) -> Any:
        """A copy of `value` safe to store, like `redact`, with known values replaced too."""
        return self._value(value, 0)

    def _value(self, value: Any, depth: int) -> Any:
        """`_redact_value` with its most common case inlined: every action record carries a few
        small dicts of short strings and numbers (its extra, invocation and reply), whose keys and
        strings are in the caches; walking them through the general path's calls cost ~10 µs a
        record, more than the rest of `record`. Anything else takes the general path."""
        if type(value) is not dict or depth >= MAX_DEPTH or len(value) > MAX_ITEMS:
            return _redact_value(value, depth, self.text, self._key)
        keys, cache = self._keys, self._cache
        out: dict[str, Any] = {}
        for name, item in value.items():
            known = keys.get(name) if type(name) is str else None
            stored, secretish = known if known is not None else self._key(name)
            if secretish and item:
                out[stored] = REDACTED
                continue
            kind = type(item)
            if kind is str:
                cached = cache.get(item) if len(item) <= _CACHED_LENGTH else None
                out[stored] = cached if cached is not None else self.text(item, MAX_STRING)
            elif item is None or kind is int or kind is float:
                out[stored] = item
            else:
                out[stored] = self._value(item, depth + 1)
        return out

    def _key(self, key: Any) -> tuple[str, bool]:
        """`_key_name` remembered: a record's keys are the same few names on every action."""
        if type(key) is not str or len(key) > _CACHED_LENGTH:
            return _key_name(key, self.text)
        known = self._keys.get(key)
        if known is None:
            if len(self._keys) >= _CACHE_ENTRIES:
                self._keys.clear()
            known = self._keys[key] = _key_name(key, self.text)
        return known

    def _compile(self) -> None:
        # Longest first: where one form starts with another, the whole of the longer one goes.
        known = sorted(self._forms, key=len, reverse=True)
        alternatives = [*map(re.escape, known), _TOKENS.pattern]
        self._head = max([_TOKEN_HEAD, *map(len, known)])  # before the pattern that may need it
        self._pattern = re.compile("|".join(alternatives))
        self._cache: dict[str, str] = {}
        self._keys: dict[str, tuple[str, bool]] = {}
