"""The YAML documents mendbot reads at every start (its config file, each prompt's front matter), parsed
once per text and kept, as Python keeps a module's bytecode.

Importing PyYAML is about 11 ms of every start (its reader compiles a pattern spanning all of Unicode),
more than reading every one of those documents. `load(text)` looks for the document's parsed form
under the user's cache directory first (`$XDG_CACHE_HOME/mendbot/yaml`, else `~/.cache/…`), as JSON
named by the SHA-256 of the text: an edited document has another name, so a stale form is never read,
and PyYAML is imported only for a text not seen before. What JSON would not give back unchanged (a
date, a set, a number as a key) is not kept: such a document is parsed each time.

The cache is the user's own: its directory is made private (0700), and a form is read only from a
directory this user owns that no one else may write to; anything wrong with it (none, unreadable,
read-only, corrupt) only means the text is parsed. At most 256 forms are kept, the oldest forgotten
first. A document PyYAML refuses raises `YamlError`, with PyYAML's words.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from mendbot.kernel import user_cache

__all__ = ["YamlError", "cache_dir", "load"]

_json = msgspec.json.Decoder()
_KEPT_AT_MOST = 256  # parsed forms kept; the oldest go first (a document not seen since is parsed again)


class YamlError(ValueError):
    """A document that is not valid YAML; the message is PyYAML's, on one line."""


def cache_dir() -> Path | None:
    """Where parsed documents are kept (None: nowhere, for a process without a home directory)."""
    return user_cache.folder("yaml")


def load(text: str) -> Any:
    """The document `text`, parsed (None for an empty one)."""
    name = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest() + ".json"
    directory = cache_dir()
    found = _cached(directory, name) if directory is not None else None
    if found is not None:
        return found[0]
    import yaml

    # PyYAML's safe loader in C (libyaml, in its wheels) where it has it: ~10x the pure-Python one, and
    # just as safe.
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise YamlError(" ".join(str(exc).split())) from None
    if directory is not None:
        _keep(directory, name, data)
    return data


def _cached(directory: Path, name: str) -> tuple[Any] | None:
    if not user_cache.private(directory):
        return None
    try:
        return (_json.decode((directory / name).read_bytes()),)
    except (OSError, msgspec.DecodeError):
        return None


def _keep(directory: Path, name: str, data: Any) -> None:
    try:
        encoded = msgspec.json.encode(data)
    except (TypeError, ValueError, OverflowError):
        return
    if _json.decode(encoded) != data:
        return  # JSON would give back something else (a number key, a date as text): parsed each time
    try:
        if not user_cache.made_private(directory):
            return
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as handle:
            written = Path(handle.name)
            handle.write(encoded)
        os.replace(written, directory / name)
    except OSError:
        with contextlib.suppress(OSError, NameError):
            written.unlink()
        return
    user_cache.keep_newest(directory, "*.json", _KEPT_AT_MOST)  # every edit of a prompt leaves one behind
