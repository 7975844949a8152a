"""What a bot needs to start and git does not keep (its `.env`, a `config.json`, a `config.py` kept out by
`.gitignore`): copied wherever mendbot starts the bot outside its live process, every secret value
replaced by a placeholder.

mendbot.yaml's `bot.files` names them (`mendbot adopt` finds them). Their live copies stay where they
are: what reaches the sandbox's tree — for the checks, the smoke load and the replay — is written here
from them, by kind:

- **dotenv** (`.env`, `config/.env`, `prod.env`): each binding as python-dotenv reads it, the value of a
  key that looks secret replaced;
- **JSON, YAML, TOML**: values under keys that look secret, at any depth, replaced (TOML in its own text,
  comments kept; JSON and YAML written again);
- **Python** (`config.py`, `settings.py`): string literals assigned to, or keyed by, a name that looks
  secret replaced in the source.

A key looks secret when its name holds one of `SECRET_WORDS` (token, secret, key, password, …). Whatever
the key, a value shaped like a credential (a Discord token, an API key: `redact_text` knows the shapes) and
the password of a URL (`mysql://bot:pw@db/bot`) are replaced too. The bot's token variable (`bot.token_env`)
gets the token it is given instead — the loopback Discord's, so that the bot can log in there — in the
environment and under that key in its files. What is no secret (`PREFIX=!`) stays as it is.

A file is written only if every secret value is gone from what is written, checked on the result (read
again as its kind, and searched for each value found in the original): a file that cannot be read as its
kind, or in which a value would survive, is not copied, and that is said in one line. A path the tree
already has keeps the tree's own content (it is what runs), its secrets replaced the same way; nothing
is written through a link.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from mendbot.kernel.sections import HostConfig
from mendbot.trust.redact import redact_text

__all__ = [
    "PLACEHOLDER",
    "SECRET_WORDS",
    "FileRefused",
    "bot_secrets",
    "copy_files",
    "file_kind",
    "looks_secret",
    "placeheld",
    "secret_values",
    "token_keys",
]

PLACEHOLDER = "mendbot-placeholder"
SECRET_WORDS = (
    "token",
    "secret",
    "key",
    "password",
    "passwd",
    "pwd",
    "auth",
    "cookie",
    "session",
    "webhook",
    "credential",
    "dsn",
)
MAX_BYTES = 256 * 1024  # a configuration file; anything larger is not one
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s/]+)(?=@)")
_SEARCHED = 4  # a secret value this long or longer is searched for in what is written


class FileRefused(Exception):
    """A file that cannot be copied with its secrets replaced; the message says which and why."""


def looks_secret(name: str) -> bool:
    """Whether a key or variable named `name` holds a secret by its name (`BOT_TOKEN`, `db_password`)."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def file_kind(path: str) -> str | None:
    """ "dotenv", "json", "toml", "yaml" or "python" for a file named `path`; None for another kind."""
    name = PurePosixPath(path).name.lower()
    if name.startswith(".env") or name.endswith(".env"):
        return "dotenv"
    suffix = PurePosixPath(name).suffix
    return {
        ".json": "json",
        ".toml": "toml",
        ".yaml": "yaml",
        ".yml": "yaml",
        ".py": "python",
    }.get(suffix)


def _secret_value(key: str, value: str) -> bool:
    return bool(value.strip()) and (looks_secret(key) or redact_text(value) != value)


def _without_url_passwords(value: str) -> str:
    return _URL_PASSWORD.sub(lambda match: match["head"] + PLACEHOLDER, value)


def _url_passwords(value: str) -> list[str]:
    return [match["password"] for match in _URL_PASSWORD.finditer(value)]


class _Replace:
    """What a secret value becomes: the token for the token's key, else the placeholder; and every
    original secret value met, for the check on the result."""

    def __init__(self, token_keys: Iterable[str], token: str) -> None:
        self.token_keys = {key.lower() for key in token_keys}
        self.token = token
        self.found: list[str] = []

    def __call__(self, key: str, value: str) -> str:
        if key.lower() in self.token_keys and value.strip():
            if value != self.token:
                self.found.append(value)
            return self.token
        if value == PLACEHOLDER:  # replaced already (a copy made ready before)
            return value
        if _secret_value(key, value):
            self.found.append(value)
            return PLACEHOLDER
        passwords = [password for password in _url_passwords(value) if password != PLACEHOLDER]
        if passwords:
            self.found.extend(passwords)
            return _without_url_passwords(value)
        return value


def _walk(value: Any, replace: _Replace, key: str = "") -> Any:
    """`value` (parsed JSON/YAML/TOML) with its secret strings replaced."""
    if isinstance(value, dict):
        return {k: _walk(v, replace, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(item, replace, key) for item in value]
    if isinstance(value, str):
        return replace(key, value)
    return value


def _dotenv(text: str, replace: _Replace) -> str:
    from dotenv.parser import parse_stream

    out = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise FileRefused(f"line {binding.original.line} is not a dotenv line")
        if binding.key is None or binding.value is None:
            out.append(binding.original.string)
            continue
        value = replace(binding.key, binding.value)
        if value == binding.value:
            out.append(binding.original.string)
            continue
        ending = "\n" if binding.original.string.endswith("\n") else ""
        exported = "export " if binding.original.string.lstrip().startswith("export ") else ""
        out.append(f"{exported}{binding.key}={json.dumps(value)}{ending}")
    return "".join(out)


def _toml_strings(value: Any, key: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _toml_strings(v, str(k))
    elif isinstance(value, list):
        for item in value:
            yield from _toml_strings(item, key)
    elif isinstance(value, str):
        yield key, value


def _toml(text: str, replace: _Replace) -> str:
    """In the file's own text: each secret string's literal (`"…"` or `'…'`) replaced where it occurs."""
    import tomllib

    parsed = tomllib.loads(text)
    for key, value in _toml_strings(parsed):
        new = replace(key, value)
        if new == value:
            continue
        for quote in ('"', "'"):
            literal = f"{quote}{value}{quote}"
            text = text.replace(literal, json.dumps(new))
    return text


def _python(text: str, replace: _Replace) -> str:
    """String literals assigned to a secret-looking name (`TOKEN = "…"`, `self.api_key: str = "…"`), keyed
    by one (`{"token": "…"}`) or passed as one (`connect(password="…")`), replaced in the source."""
    tree = ast.parse(text)
    spans: list[tuple[ast.Constant, str]] = []

    def target_name(node: ast.expr) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return node.attr
        return ""

    def take(name: str, node: ast.expr | None) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            spans.append((node, name))

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                take(target_name(target), node.value)
        elif isinstance(node, ast.AnnAssign):
            take(target_name(node.target), node.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    take(key.value, value)
        elif isinstance(node, ast.keyword) and node.arg is not None:
            take(node.arg, node.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            take("", node)  # any literal shaped like a credential, or a URL with a password
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line.encode("utf-8")))
    raw = text.encode("utf-8")
    edits: dict[tuple[int, int], str] = {}
    for node, name in spans:
        assert isinstance(node.value, str)
        new = replace(name, node.value)
        if new == node.value or node.end_lineno is None or node.end_col_offset is None:
            continue
        start = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        edits.setdefault((start, end), repr(new))
    for (start, end), literal in sorted(edits.items(), reverse=True):
        raw = raw[:start] + literal.encode("utf-8") + raw[end:]
    return raw.decode("utf-8")


def _loads(kind: str, text: str) -> Any:
    """`text` read as JSON, YAML or TOML (their readers load with the first file of their kind)."""
    if kind == "json":
        return json.loads(text)
    if kind == "yaml":
        import yaml

        return yaml.safe_load(text)
    import tomllib

    return tomllib.loads(text)


def _json(text: str, replace: _Replace) -> str:
    return json.dumps(_walk(json.loads(text), replace), indent=2, ensure_ascii=False) + "\n"


def _yaml(text: str, replace: _Replace) -> str:
    import yaml

    return yaml.safe_dump(_walk(yaml.safe_load(text), replace), sort_keys=False, allow_unicode=True)


_REWRITE: dict[str, Callable[[str, _Replace], str]] = {
    "dotenv": _dotenv,
    "json": _json,
    "yaml": _yaml,
    "toml": _toml,
    "python": _python,
}


def _readable(kind: str, text: str) -> None:
    """Raise (ValueError, SyntaxError, …) unless `text` reads as `kind`."""
    if kind == "dotenv":
        from dotenv.parser import parse_stream

        if any(binding.error for binding in parse_stream(io.StringIO(text))):
            raise ValueError("not a dotenv file")
    elif kind == "python":
        ast.parse(text)
    else:
        _loads(kind, text)


def _unreadable() -> tuple[type[Exception], ...]:
    """What reading a file of any kind raises when it is not of that kind."""
    import yaml

    return (ValueError, SyntaxError, yaml.YAMLError, RecursionError)


def placeheld(name: str, text: str, *, token_keys: Iterable[str] = (), token: str = PLACEHOLDER) -> str:
    """`text`, the content of the file `name`, with its secret values replaced (module docstring): the
    keys in `token_keys` get `token`. FileRefused when it cannot be read as its kind or a secret value
    would remain."""
    kind = file_kind(name)
    if kind is None:
        raise FileRefused(
            f"{name}: mendbot cannot tell its secrets from the rest (not dotenv, JSON, TOML, YAML or Python)"
        )
    replace = _Replace(token_keys, token)
    try:
        written = _REWRITE[kind](text, replace)
        _readable(kind, written)
    except FileRefused as exc:
        raise FileRefused(f"{name}: {exc}") from None
    except _unreadable() as exc:
        raise FileRefused(f"{name}: cannot be read as {kind} ({type(exc).__name__})") from None
    if any(len(value.strip()) >= _SEARCHED and value.strip() in written for value in replace.found):
        raise FileRefused(f"{name}: one of its secret values also appears where it cannot be replaced")
    return written


def secret_values(name: str, text: str) -> list[str]:
    """The secret values the file `name` holds (what `placeheld` replaces); none for a file it cannot read."""
    replace = _Replace((), PLACEHOLDER)
    kind = file_kind(name)
    if kind is None:
        return []
    try:
        _REWRITE[kind](text, replace)
    except FileRefused:
        return []
    except _unreadable():
        return []
    return [value for value in replace.found if value.strip()]


def token_keys(name: str, text: str) -> list[str]:
    """The keys of the file `name` that hold a token by their name (`BOT_TOKEN`, `"token"`), in order."""
    kind = file_kind(name)
    keys: list[str] = []
    try:
        if kind == "dotenv":
            from dotenv import dotenv_values

            keys = list(dotenv_values(stream=io.StringIO(text)))
        elif kind in ("json", "yaml", "toml"):
            keys = [key for key, _ in _toml_strings(_loads(kind, text))]
        elif kind == "python":
            tree = ast.parse(text)
            keys = [
                target.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            ]
    except _unreadable():
        return []
    return list(dict.fromkeys(key for key in keys if "token" in key.lower()))


def _inside(root: Path, relative: str) -> Path | None:
    """`root/relative` when it stays inside `root` with no link on the way (None otherwise)."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        return None
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            return None
    return current


def copy_files(
    live: Path, tree: Path, files: list[str], *, token_keys: Iterable[str] = (), token: str = PLACEHOLDER
) -> list[str]:
    """Write each of `files` (repository paths) from the live checkout `live` into `tree`, secrets
    replaced; one line for each that was not copied and why. A file the tree has already (git keeps it)
    is the tree's: its own content is what runs, written again with its secrets replaced and the token
    given (a bot that reads its token from a committed `config/.env`). A file neither has is no problem:
    the bot starts without it there too."""
    keys = list(token_keys)
    problems = []
    for name in files:
        source, target = _inside(live, name), _inside(tree, name)
        if source is None or target is None:
            problems.append(f"{name}: not a path inside the repository (or reached through a link)")
            continue
        if os.path.lexists(target):
            if not target.is_file():
                problems.append(f"{name}: not a file in the tree")
                continue
            source = target
        elif not source.is_file():
            continue
        try:
            if source.stat().st_size > MAX_BYTES:
                raise FileRefused(f"{name}: larger than {MAX_BYTES // 1024} KB, not a configuration file")
            text = placeheld(name, source.read_text(encoding="utf-8"), token_keys=keys, token=token)
        except FileRefused as exc:
            problems.append(str(exc))
            if source == target:
                target.unlink()  # the tree's own, whose secrets cannot all be replaced: not left there
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{name}: cannot be read ({type(exc).__name__})")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return problems


def bot_secrets(host: HostConfig | None, live: Path) -> list[str]:
    """The secret values of a bot mendbot is attached to, as its live checkout and environment hold them:
    its token and what its `files` hold under keys that look secret — what the redactor must know."""
    if host is None:
        return []
    found = [os.environ.get(host.token_env, "")]
    for name in host.files:
        path = _inside(live, name)
        if path is None or not path.is_file():
            continue
        try:
            if path.stat().st_size <= MAX_BYTES:
                found += secret_values(name, path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    return [value for value in found if value]
