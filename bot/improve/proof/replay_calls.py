"""What one replayed call sends to the bot under proof, and what the observer sees of it.

`mendbot.improve.proof.replay` starts the bot and hands each case of the plan here. Every case is sent as
the member who made it (`caller`: its id and roles, made in the loopback guild before the bot connects),
in the channel where it was made, and judged by what a member would see and by what the launcher's watch
reports — never by what the bot under proof says of itself:

- **a prefix or hybrid command, a slash command, an autocomplete, a message context menu**: the message
  or interaction, and its answer (a slash command or a component must be acknowledged within Discord's
  3 s; an autocomplete's answer is the choices it offers);
- **a button, a select menu, a modal**: the call whose answer showed it is sent again first (`shown_by`,
  as recorded: the command that sent the view with the state it was sent with, the button that opened
  the modal), then the member presses the button, picks the recorded values or submits the recorded
  fields on that answer — a component the answer does not carry, or carries disabled, cannot be used, as
  on Discord (no answer). A persistent view no recorded call showed is pressed on a message of the bot's
  carrying it;
- **a listener** of messages or reactions: the message posted again (for a reaction, a message posted and
  the reaction added), and what the listener did — the messages the bot posted, whether it ran at all
  (the watch saw its handler start) and when it ended: a listener that no longer runs is no answer;
- **one iteration of a task loop**: the launcher is asked to run the loop's body once, as the loop runs
  it, and says whether it returned or raised; which loops are running is asked first (a loop the base
  runs and the branch never starts is one that stopped working).

Each call's time is the observer's, from the member's action (the press, not the command that showed it)
to the first answer — a listener's, to its handler's end; what the watch saw in its window is its own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from mendbot.improve.proof.replay_plan import ReplayCase
from mendbot.improve.proof.replay_reports import Raised, Reports, Watch
from mendbot.kernel.errors import named_bug
from mendbot.trust.loopback_discord_model import message_text

if TYPE_CHECKING:
    from mendbot.trust.loopback_discord import DiscordDouble
    from mendbot.trust.loopback_discord_model import FakeChannel

__all__ = [
    "ACK_TIMEOUT_S",
    "CALL_TIMEOUT_S",
    "MEMBER",
    "ReplayResult",
    "Seen",
    "call",
    "prepare_people",
]

CALL_TIMEOUT_S = 15.0  # a recorded call answered within this, or "no answer"
# Discord's own deadline: a slash command or a component not acknowledged (answered, or "thinking…") within
# 3 s fails for the user ("The application did not respond"), whatever the bot sends later.
ACK_TIMEOUT_S = 3.0
# After a call's first answer, the next call waits until nothing has moved (no message, no edit, no
# exception) for `_QUIET_S`, at most `_SETTLE_S`: what one call does is not taken for the next one's.
_QUIET_S = 0.05
_SETTLE_S = 0.6
# After the launcher says the bot has done all a member's event made it do, how long an answer may still
# take to come: from a task the event only woke (one awaiting `bot.wait_for`), which the launcher does not
# count as the event's.
_AFTER_SETTLED_S = 1.0
_REPLY_CHARS = 300
MEMBER = "alice"  # who sends a call recorded without its caller
_T = TypeVar("_T")


@dataclass(frozen=True)
class ReplayResult:
    """What the observer saw for one replayed call: what a user would have seen, and when."""

    key: str
    answered: bool
    reply: str  # what a user reads in the answer (content and embeds), cut short; "" without one
    error_type: str | None  # the bug the bot's apology names (a listener's, a task's: what escaped it)
    duration_ms: float  # from the call to the first answer (a listener's: to its end), by the observer
    raised: tuple[Raised, ...] = ()  # what the checkout's code raised during the call
    watch: Watch = field(default_factory=Watch)
    loops: tuple[str, ...] | None = None  # a task's call: the loops the bot had started when it was asked

    @property
    def ok(self) -> bool:
        return self.answered and self.error_type is None

    def shown(self) -> str:
        """The answer in a few words, for the proof's table."""
        if not self.answered:
            return f"no answer{f' ({self.reply})' if self.reply.startswith('not ') else ''}"
        if self.error_type is not None:
            return f"error shown: {self.error_type}"
        if not self.reply:
            return "ran, said nothing"
        return f"answered “{_snippet(self.reply)}”"

    def escaped(self, files: list[str]) -> Raised | None:
        """An exception that left the handler's code (one of `files` on its way) for the framework: the
        answer is then the framework's handling of an error (a refusal), not the handler's result."""
        for raised in self.raised:
            if not raised.caught_in_repo and (not files or set(raised.frames) & set(files)):
                return raised
        return None


def _snippet(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass
class Seen:
    """One call as it went: when its window began (the first thing sent for it), its first answer (None:
    none), how long that took from the member's action, and for a task the loops started by then."""

    started: float
    answer: dict[str, Any] | None
    duration_ms: float
    note: str = ""
    silent: bool = False
    loops: tuple[str, ...] | None = None
    failed: str | None = None  # a task's iteration: what it raised, as the launcher that ran it saw

    def result(
        self,
        key: str,
        observer: DiscordDouble,
        channel: FakeChannel,
        raised: tuple[Raised, ...],
        watch: Watch,
    ) -> ReplayResult:
        if self.answer is None:
            return ReplayResult(key, False, self.note, None, self.duration_ms, raised, watch, self.loops)
        if self.answer.get("id") is None:  # choices, a modal, or a silent handler's end
            text = str(self.answer.get("content") or "")[:_REPLY_CHARS]
        else:
            current = next((m for m in observer.bot_messages() if m["id"] == self.answer["id"]), self.answer)
            text = message_text(current)[:_REPLY_CHARS]
        error = named_bug(text)
        if self.silent and error is None:  # nobody is answered: what escaped the handler is its failure
            error = next((r.error_type for r in raised if not r.caught_in_repo), self.failed)
        return ReplayResult(key, True, text, error, self.duration_ms, raised, watch, self.loops)


# -- who and where ------------------------------------------------------------------------------------


def _callers(case: ReplayCase) -> list[dict[str, Any]]:
    found = [case.caller] if isinstance(case.caller, dict) else []
    shown = case.shown_by
    while isinstance(shown, dict):
        if isinstance(shown.get("caller"), dict):
            found.append(shown["caller"])
        shown = shown.get("shown_by")
    return [caller for caller in found if _id(caller.get("user"))]


def _roles(caller: dict[str, Any]) -> list[int]:
    """A recorded caller's role ids (none where the record kept them too deep to read, or not as ids)."""
    roles = caller.get("roles")
    return [int(role) for role in roles if _id(role)] if isinstance(roles, list) else []


def prepare_people(observer: DiscordDouble, cases: list[ReplayCase]) -> None:
    """The recorded callers of every case (and of what showed their views), their roles and channels, in
    the loopback guild — which takes the recorded guild's id — before the bot connects."""
    observer.member(MEMBER)
    callers = [caller for case in cases for caller in _callers(case)]
    guilds = [int(caller["guild"]) for caller in callers if _id(caller.get("guild"))]
    if guilds:
        observer.guild.id = max(set(guilds), key=guilds.count)
    for caller in callers:
        observer.member_as(int(caller["user"]), _roles(caller))
        if _id(caller.get("channel")):
            observer.channel_as(int(caller["channel"]))
    for case in cases:
        author = ((case.target or {}).get("message") or {}).get("author")
        if _id(author) and str(author) != observer.user["id"]:
            observer.member_as(int(str(author)))


def _id(value: Any) -> bool:  # the record may have kept an id otherwise (too deep), or not at all
    return isinstance(value, int) or (isinstance(value, str) and value.isdigit())


def _place(
    observer: DiscordDouble, general: FakeChannel, caller: dict[str, Any] | None
) -> tuple[FakeChannel, str]:
    """Where a call is sent and as whom: the recorded channel and member, else #general and `MEMBER`."""
    if not isinstance(caller, dict):
        return general, MEMBER
    channel = observer.channel_as(int(caller["channel"])) if _id(caller.get("channel")) else general
    who = observer.member_as(int(caller["user"]), _roles(caller)) if _id(caller.get("user")) else MEMBER
    return channel, who


# -- sending ------------------------------------------------------------------------------------------


async def call(
    observer: DiscordDouble,
    general: FakeChannel,
    case: ReplayCase,
    timeout_s: float,
    reports: Reports,
    *,
    entries: list[str] | None = None,
) -> Seen:
    """Send one case as its member and wait for the first answer a user would see, then for quiet.
    `entries`: the qualified names of the kind's handlers (a listener's is watched from start to end)."""
    begun = time.monotonic()
    scene = _Scene(observer, general, reports, timeout_s)
    where, who = _place(observer, general, case.caller)
    try:
        if case.family == "task":
            seen = await _iteration(scene, case, begun)
        elif case.family == "listener":
            seen = await _event(scene, case, where, who, begun=begun, entries=entries or [])
        elif case.family in ("view", "modal"):
            seen = await _component(scene, case, where, who, begun=begun)
        elif case.family == "autocomplete":
            command, _, focused = case.kind.split(":", 1)[1].rpartition(".")
            started = time.monotonic()
            asked = await observer.autocomplete(where, command, focused, author=who, **case.options)
            seen = await _answer_of(scene, asked, begun, started)
        elif case.target is not None:
            seen = await _context_menu(scene, case, where, who, begun=begun)
        elif case.slash:
            seen = await _slash(scene, where, who, case, begun=begun)
        else:
            # timed from before the send: the bot may be at work on it before the send returns here
            started = time.monotonic()
            said = await observer.send_message(where, case.text, author=who)
            answer = await _unless_settled(
                reports,
                f"MESSAGE_CREATE:{said['id']}",
                observer.wait_for_message(
                    lambda message: int(message["id"]) > int(said["id"]), timeout_s, channel=where
                ),
            )
            seen = Seen(begun, answer, (time.monotonic() - started) * 1000)
    except LookupError as exc:  # a command the bot did not sync, a component it does not show
        return Seen(begun, None, 0.0, f"not answered: {exc}", silent=case.silent)
    except _Finished:
        took = (time.monotonic() - begun) * 1000
        return Seen(
            begun, None, took, "not answered: the bot finished with it without a word", silent=case.silent
        )
    except AssertionError:  # not acknowledged within Discord's 3 s, or no answer within the time
        return Seen(begun, None, (time.monotonic() - begun) * 1000, silent=case.silent)
    await _quiet(observer, reports)
    return seen


@dataclass(frozen=True)
class _Scene:
    """What every call goes through: the observer, #general, the launcher's reports, the time allowed."""

    observer: DiscordDouble
    general: FakeChannel
    reports: Reports
    timeout_s: float


async def _slash(scene: _Scene, where: FakeChannel, who: str, case: ReplayCase, *, begun: float) -> Seen:
    observer, timeout_s = scene.observer, scene.timeout_s
    started = time.monotonic()
    interaction = await observer.slash(where, case.name.lstrip("/"), author=who, **case.options)

    async def answer() -> dict[str, Any]:
        await observer.acknowledged(interaction, timeout=min(ACK_TIMEOUT_S, timeout_s))
        return await observer.response_to(interaction, timeout=timeout_s)

    shown = await _unless_settled(scene.reports, f"INTERACTION_CREATE:{interaction['id']}", answer())
    return Seen(begun, shown, (time.monotonic() - started) * 1000)


async def _answer_of(scene: _Scene, interaction: dict[str, Any], begun: float, started: float) -> Seen:
    """The answer to `interaction`, timed from `started` (taken before it was sent)."""
    answer = await _interaction_answer(scene, interaction)
    return Seen(begun, answer, (time.monotonic() - started) * 1000)


async def _interaction_answer(scene: _Scene, interaction: dict[str, Any]) -> dict[str, Any]:
    """The answer to an interaction (acknowledged within Discord's 3 s), as soon as it comes; no answer
    (AssertionError) once the time allowed is out or the bot has done all it does for it."""
    observer, timeout_s = scene.observer, scene.timeout_s

    async def answer() -> dict[str, Any]:
        await observer.acknowledged(interaction, timeout=min(ACK_TIMEOUT_S, timeout_s))
        return await observer.answer_of(interaction, timeout_s)

    return await _unless_settled(scene.reports, f"INTERACTION_CREATE:{interaction['id']}", answer())


class _Finished(AssertionError):
    """No answer: the bot has done all that the member's event made it do, and said nothing."""


async def _unless_settled(reports: Reports, key: str, answer: Awaitable[_T]) -> _T:
    """What `answer` waits for — or no answer (AssertionError, as on its own timeout) as soon as the
    launcher says the bot has done all that the member's event `key` made it do and, a moment later
    (`_AFTER_SETTLED_S`, for a task the event only woke), nothing came: a call nothing will answer costs
    that moment, not all the time allowed. Its report can only shorten the wait for "no answer" (code
    under test that forged it would only lose its own call), never make an answer."""
    answering = asyncio.ensure_future(answer)
    settled = asyncio.ensure_future(reports.until_settled(key))
    try:
        await asyncio.wait({answering, settled}, return_when=asyncio.FIRST_COMPLETED)
        if not answering.done():
            await asyncio.wait({answering}, timeout=_AFTER_SETTLED_S)
        if not answering.done():
            raise _Finished(key)
        return answering.result()
    finally:
        answering.cancel()
        settled.cancel()


async def _context_menu(
    scene: _Scene, case: ReplayCase, where: FakeChannel, who: str, *, begun: float
) -> Seen:
    observer = scene.observer
    target = (case.target or {}).get("message") or {}
    author = target.get("author")
    writer = observer.member_as(int(author)) if author and str(author) != observer.user["id"] else who
    posted = await observer.send_message(where, str(target.get("content") or "…"), author=writer)
    started = time.monotonic()
    asked = await observer.context_menu(where, case.name.lstrip("/"), posted, author=who)
    return await _answer_of(scene, asked, begun, started)


async def _component(scene: _Scene, case: ReplayCase, where: FakeChannel, who: str, *, begun: float) -> Seen:
    """A button, select menu or modal: what showed it sent again, then what the member did on it."""
    observer = scene.observer
    if case.family == "modal":
        opened = await _opened(scene, case.shown_by)
        started = time.monotonic()
        submitted = await observer.submit_modal(opened, dict(case.options.get("fields") or {}), author=who)
        answer = await _interaction_answer(scene, submitted)
        return Seen(begun, answer, (time.monotonic() - started) * 1000)
    custom_id = str(case.options.get("custom_id"))
    if case.shown_by is not None:
        message = await _showing(scene, case.shown_by, custom_id)
    else:  # a persistent view: its component on a message of the bot's
        message = await observer.bot_message(where, "", [{"type": 1, "components": [_persistent(case)]}])
    started = time.monotonic()
    used = await observer.use(message, custom_id, author=who, values=case.options.get("values"))
    answer = await _interaction_answer(scene, used)
    return Seen(begun, answer, (time.monotonic() - started) * 1000)


def _persistent(case: ReplayCase) -> dict[str, Any]:
    custom_id = str(case.options.get("custom_id"))
    if case.options.get("values") is not None:
        options = [{"label": choice, "value": choice} for choice in case.choices or case.options["values"]]
        return {"type": 3, "custom_id": custom_id, "options": options}
    return {"type": 2, "style": 1, "label": custom_id, "custom_id": custom_id}


async def _send_shown_by(
    scene: _Scene, shown_by: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, float]:
    """Send the recorded call that showed a view or modal, as its member: (its interaction if it was one,
    its first answer, when it was sent). A button that showed it is pressed on what showed that button;
    LookupError if the bot was done with what showed it and had said nothing."""
    kind = str(shown_by.get("kind"))
    name = str(shown_by.get("name") or "")
    try:
        return await _sending_shown_by(scene, shown_by, kind, name)
    except _Finished:
        raise LookupError(f"what showed it, `{name or kind}`, was not answered") from None


async def _sending_shown_by(
    scene: _Scene, shown_by: dict[str, Any], kind: str, name: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, float]:
    observer, timeout_s = scene.observer, scene.timeout_s
    where, who = _place(observer, scene.general, shown_by.get("caller"))
    options = dict(shown_by.get("options") or {})
    sent = time.monotonic()
    if kind.startswith(("app:", "command:")) and name.startswith("/"):
        interaction = await observer.slash(where, name.lstrip("/"), author=who, **options)
        return interaction, await _interaction_answer(scene, interaction), sent
    if kind.startswith("command:"):
        said = await observer.send_message(where, str(options.get("text") or ""), author=who)
        answer = await _unless_settled(
            scene.reports,
            f"MESSAGE_CREATE:{said['id']}",
            observer.wait_for_message(
                lambda message: int(message["id"]) > int(said["id"]), timeout_s, channel=where
            ),
        )
        return None, answer, sent
    if kind.startswith("view:") and isinstance(shown_by.get("shown_by"), dict):
        custom_id = str(options.get("custom_id"))
        message = await _showing(scene, shown_by["shown_by"], custom_id)
        used = await observer.use(message, custom_id, author=who, values=options.get("values"))
        return used, await _interaction_answer(scene, used), sent
    raise LookupError(f"what showed it ({kind}) cannot be sent again")


async def _showing(scene: _Scene, shown_by: dict[str, Any], custom_id: str) -> dict[str, Any]:
    """The message carrying component `custom_id` once `shown_by` is sent again: its answer, or a message
    of the bot's after it (a followup) — the first that carries it, within the time."""
    observer, timeout_s = scene.observer, scene.timeout_s
    _, answer, sent = await _send_shown_by(scene, shown_by)

    def carries(message: dict[str, Any]) -> bool:
        return custom_id in json.dumps(message.get("components") or [])

    if answer is not None and answer.get("id") is not None and carries(answer):
        return answer
    deadline = sent + timeout_s
    first = int(answer["id"]) if answer and answer.get("id") else 0
    found = await observer.wait_for_message(
        lambda message: int(message["id"]) >= first and carries(message),
        max(0.1, deadline - time.monotonic()),
    )
    return found


async def _opened(scene: _Scene, shown_by: dict[str, Any] | None) -> dict[str, Any]:
    """The interaction in answer to which the bot opens the modal again."""
    if not shown_by:
        raise LookupError("what opened the modal was not recorded")
    interaction, _, _ = await _send_shown_by(scene, shown_by)
    if interaction is None or scene.observer.modals.get(interaction["token"]) is None:
        raise LookupError("the bot did not open the modal again")
    return interaction


async def _event(
    scene: _Scene, case: ReplayCase, where: FakeChannel, who: str, *, begun: float, entries: list[str]
) -> Seen:
    """A listener's event made again — a member's message, or a message and a member's reaction to it —
    and what the listener did: the bot's first message after it, and when its handler ended. A listener
    whose handler never starts is no answer."""
    observer, reports, timeout_s = scene.observer, scene.reports, scene.timeout_s
    if case.name == "on_message":
        started = time.monotonic()
        said = await observer.send_message(where, case.text, author=who)
        key = f"MESSAGE_CREATE:{said['id']}"
    else:
        said = await observer.send_message(where, str(case.options.get("content") or "…"), author=who)
        started = time.monotonic()
        await observer.react(said, str(case.options.get("emoji")), author=who)
        key = f"MESSAGE_REACTION_ADD:{said['id']}"
    deadline = started + timeout_s
    settled_at: float | None = None  # when the bot had done all it does for the event
    while time.monotonic() < deadline:
        ended = reports.ended(entries, started) if entries else None
        if ended is not None:
            break
        if not entries and observer.messages and int(observer.messages[-1]["id"]) > int(said["id"]):
            break
        if settled_at is None and key in reports.settled:
            settled_at = time.monotonic()
        if settled_at is not None and time.monotonic() - settled_at >= _AFTER_SETTLED_S:
            break  # the listener did not run (or ran and said nothing), and nothing is left to run
        await reports.wait_moved(min(0.1, max(0.0, deadline - time.monotonic())))
    ended = reports.ended(entries, started) if entries else None
    posted = [m for m in observer.bot_messages() if int(m["id"]) > int(said["id"])]
    if ended is None and not posted:
        ran = reports.started(entries, started)
        note = (
            "not answered: the listener is still running" if ran else "not answered: the listener did not run"
        )
        return Seen(begun, None, (time.monotonic() - started) * 1000, note, silent=True)
    took = ((ended if ended is not None else time.monotonic()) - started) * 1000
    answer = posted[0] if posted else {"id": None, "content": ""}
    return Seen(begun, answer, took, silent=True)


async def _iteration(scene: _Scene, case: ReplayCase, begun: float) -> Seen:
    """One iteration of a task loop, run by the launcher, and which loops were running before it."""
    observer, reports, timeout_s = scene.observer, scene.reports, scene.timeout_s
    name = case.kind.split(":", 1)[1]
    asked = await reports.ask({"loops": 1}, timeout_s)
    loops = tuple(str(loop) for loop in (asked or {}).get("started") or ())
    before = observer.messages[-1]["id"] if observer.messages else "0"
    started = time.monotonic()
    done = await reports.ask({"task": name}, timeout_s)
    took = (time.monotonic() - started) * 1000
    if done is None:
        return Seen(begun, None, took, "not answered: the iteration did not end", silent=True, loops=loops)
    if not done.get("found"):
        return Seen(begun, None, took, f"not answered: no loop `{name}`", silent=True, loops=loops)
    posted = [m for m in observer.bot_messages() if int(m["id"]) > int(before)]
    answer = posted[0] if posted else {"id": None, "content": ""}
    failed = str(done["raised"]) if done.get("raised") else None
    return Seen(begun, answer, took, silent=True, loops=loops, failed=failed)


async def _quiet(observer: DiscordDouble, reports: Reports) -> None:
    """Until nothing moved for `_QUIET_S` (messages, edits, the watch's reports), at most `_SETTLE_S`."""
    deadline = time.monotonic() + _SETTLE_S
    while time.monotonic() < deadline:
        changes, events = observer.changes, len(reports.events)
        await asyncio.sleep(_QUIET_S)
        if observer.changes == changes and len(reports.events) == events:
            return
