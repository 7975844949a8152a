"""How the pages write what they show: times, people, run states, durations and chat text.

Installed into the pages' Jinja environment (`install`). Each helper escapes what it is given before it
adds markup of its own, so a value from outside the bot stays text:

- `moment(ts)`: a `<time>` holding the moment in UTC; the dashboard's script (static/dashboard.js) writes
  it relative ("3 min ago") with the moment in the viewer's own time zone on hover.
- `person(user_id)`: the name the bot knows them by, the Discord id on hover ("user 1234…" when it
  knows no name).
- `state(name)`: a run state by name with its icon (`mendbot.improve.runs.state_label`), as chat shows it.
- `kind(kind)`: what an action kind records, in words ("the `roll` command", `mendbot.observe.kind_words`).
- `took(seconds)`: a duration as people read it ("2 min 5 s", "0.4 s").
- `chat(text)`: text written for Discord (`**bold**`, `` `code` ``) as HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import jinja2
from markupsafe import Markup, escape

from mendbot.improve.runs import state_label
from mendbot.kernel.durations import took as took_words
from mendbot.observe.kind_words import kind_words

__all__ = ["chat", "install", "kind", "moment", "person", "state", "took"]

_BOLD = re.compile(r"\*\*(.+?)\*\*", re.S)
_CODE = re.compile(r"`([^`\n]+)`")


def moment(ts: float | None) -> Markup:
    if ts is None:
        return Markup("")
    when = datetime.fromtimestamp(ts, UTC)
    return Markup('<time datetime="{}">{} UTC</time>').format(
        when.isoformat(timespec="seconds").replace("+00:00", "Z"), when.strftime("%Y-%m-%d %H:%M:%S")
    )


def took(seconds: float | None) -> str:
    return "" if seconds is None else took_words(seconds)  # as `/run N` says it (bot/kernel/durations.py)


def state(name: str | None) -> Markup:
    """A run state by name with its icon, as chat says it; the stored value on hover."""
    if not name:
        return Markup("")
    return Markup('<span class="state {}" title="{}">{}</span>').format(name, name, state_label(name))


def kind(value: str | None) -> Markup:
    """What an action kind records, in words ("the `roll` command"); the kind itself on hover."""
    if not value:
        return Markup("")
    return Markup('<span class="kind" title="{}">{}</span>').format(value, chat(kind_words(value)))


def chat(text: str | None) -> Markup:
    """Chat text as HTML: escaped first, then `**bold**` and `` `code` `` made markup."""
    escaped = str(escape(text or ""))
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    return Markup(_BOLD.sub(r"<strong>\1</strong>", escaped))  # escaped just above


def person(names: Callable[[int], str | None], user_id: int | None) -> Markup:
    if user_id is None:
        return Markup('<span class="none">nobody</span>')
    name = names(user_id)
    return Markup('<span class="person" title="Discord id {}">{}</span>').format(
        user_id, name if name else f"user {user_id}"
    )


def install(env: jinja2.Environment, names: Callable[[int], str | None]) -> None:
    """Add the helpers to `env` (`person` as a global bound to `names`, the others as filters)."""
    env.filters["moment"] = moment
    env.filters["took"] = took
    env.filters["state"] = state
    env.filters["chat"] = chat
    env.filters["kind"] = kind
    env.globals["person"] = lambda user_id: person(names, user_id)
