"""The chat service: channel history from SQLite, the persona prompt, a streamed model reply.

It takes plain values (ids, names, text) so Discord, the playground and tests call it alike.
Without an API key it says how to configure one, in full the first time in a channel and in
one short line after that: every message addressed to the bot gets an answer. A reply the model's API
fails to give (unreachable, refusing the key, rate-limiting, overloaded) is recorded as the environment's
failure, not the code's (`model_problem`).
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from mendbot.chat.route import ROUTE_TOOL, Decision, OpenIncident, read_decision, route_request
from mendbot.db import chat as queries
from mendbot.db.core import Connection
from mendbot.kernel.errors import model_problem
from mendbot.kernel.prompts import PromptRegistry
from mendbot.kernel.sections import ChatConfig
from mendbot.observe.recorder import ActionRecorder
from mendbot.trust.redact import Redactor

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

__all__ = [
    "DISCORD_LIMIT",
    "MODEL_AWAY",
    "NO_KEY_AGAIN",
    "NO_KEY_MESSAGE",
    "ChatReply",
    "ChatService",
    "split_message",
]

DISCORD_LIMIT = 2000
NO_KEY_MESSAGE = (
    "I can't chat yet: no model API key is configured. Put `ANTHROPIC_API_KEY=...` in `.env` "
    "(see `.env.example`) or the environment and restart me. Commands like `/roll` work without it."
)
NO_KEY_AGAIN = "Still no model API key, so I can't chat — `/help` lists what works without one."
MODEL_AWAY = (
    "I can't reach the model's API right now ({why}), so I can't chat — I'll answer properly once it is "
    "back. `/runs` and `/run N` say how the runs are doing meanwhile."
)
ROUTE_PROMPT = "chat/route"


class ChatReply(msgspec.Struct, frozen=True):
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    model: str | None = None

    @property
    def chunks(self) -> list[str]:
        return split_message(self.text)


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """Split text into Discord-sized chunks, preferring paragraph, line, then word breaks."""
    chunks: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < limit // 2:
            cut = limit
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        chunks.append(rest)
    return chunks


class ChatService:
    def __init__(
        self,
        db: Connection,
        prompts: PromptRegistry,
        config: ChatConfig,
        recorder: ActionRecorder,
        *,
        api_key: str | None,
        base_url: str | None,
        clock: Callable[[], datetime],
        redactor: Redactor | None = None,
    ) -> None:
        self._db = db
        self._redactor = redactor or Redactor()
        self._prompts = prompts
        self._config = config
        self._recorder = recorder
        self._clock = clock
        self._api_key = api_key or None
        self._base_url = base_url
        self._client: AsyncAnthropic | None = None  # made for the first reply (`_model`)
        self._told_no_key: set[int] = set()
        # (seconds since, why) while the model's API is known to be away — as the runs' gateway found it
        # (set by the assembly): a line addressed to the bot is then answered at once, not after its own
        # try at the API (and the first try's import of its client) on a machine already struggling.
        self.model_away: Callable[[], tuple[float, str] | None] = lambda: None

    @property
    def configured(self) -> bool:
        return self._api_key is not None

    def _record_model_failure(self, kind: str, exc: Exception, started: float, ids: dict[str, Any]) -> None:
        """A call to the model that raised, recorded. The model's API failing is the environment's
        problem: recorded without a fingerprint, so no code incident opens; the caller opens the
        environment incident and answers."""
        problem = model_problem(exc)
        said = f"{type(exc).__name__}: {exc}"[:500]
        reason = {"environment": problem.kind, "error": said} if problem else None
        self._recorder.record(
            kind,
            "chat",
            ok=False,
            duration_ms=(time.perf_counter() - started) * 1000,
            error=None if problem else exc,
            extra=reason,
            **ids,
        )

    async def _model(self) -> AsyncAnthropic:
        """The model's client, made for the first reply. Importing anthropic costs ~45 MB and ~0.6 s
        of CPU, which a bot nobody chats with should not pay at every start; the import runs in a
        thread so the event loop goes on answering meanwhile."""
        if self._client is None:
            assert self._api_key is not None
            anthropic = await asyncio.to_thread(importlib.import_module, "anthropic")
            if self._client is None:  # another reply may have made it while this one waited
                self._client = anthropic.AsyncAnthropic(
                    api_key=self._api_key, base_url=self._base_url, max_retries=1
                )
        return self._client

    async def reply(
        self,
        *,
        channel_id: int,
        guild_name: str,
        author_id: int,
        author_name: str,
        message_id: int | None,
        text: str,
        bot_id: int,
    ) -> ChatReply | None:
        """Answer a message addressed to the bot; None when there is nothing to say."""
        if not self.configured:
            if channel_id in self._told_no_key:
                return ChatReply(NO_KEY_AGAIN)
            self._told_no_key.add(channel_id)
            return ChatReply(NO_KEY_MESSAGE)
        away = self.model_away()
        if away is not None:
            return ChatReply(MODEL_AWAY.format(why=self._redactor.text(away[1])))
        ids: dict[str, Any] = {"channel_id": channel_id, "user_id": author_id, "message_id": message_id}
        started = time.perf_counter()
        try:
            reply = await self._ask_model(
                channel_id=channel_id,
                guild_name=guild_name,
                author_id=author_id,
                author_name=author_name,
                message_id=message_id,
                text=text,
                bot_id=bot_id,
            )
        except Exception as exc:
            self._record_model_failure("chat:reply", exc, started, ids)
            raise
        self._recorder.record(
            "chat:reply",
            "chat",
            ok=True,
            duration_ms=(time.perf_counter() - started) * 1000,
            cost_usd=reply.cost_usd,
            extra={
                "model": reply.model,
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens,
            },
            **ids,
        )
        return reply

    async def decide(
        self,
        *,
        text: str,
        commands: Sequence[str],
        incidents: Sequence[OpenIncident],
        channel_id: int | None = None,
        user_id: int | None = None,
        message_id: int | None = None,
    ) -> Decision | None:
        """What a message the word grammar could not place asks for: fix, investigate or chat, and the
        listed command or incident it is about — from the model's `route_request` tool call
        (bot/chat/route.py). None without a key, or when the model made no such call. The model's API
        failing raises, recorded as the environment's failure like a chat reply's."""
        if not self.configured or self.model_away() is not None:
            return None  # no model to ask: the keyless way (one short question) answers at once
        ids: dict[str, Any] = {"channel_id": channel_id, "user_id": user_id, "message_id": message_id}
        started = time.perf_counter()
        prompt = self._prompts.get(ROUTE_PROMPT)
        tool, messages = route_request(text, commands, incidents)
        try:
            client = await self._model()
            request: dict[str, Any] = {
                "model": prompt.meta.model or "claude-sonnet-5-5",
                "max_tokens": prompt.meta.max_tokens,
                "system": prompt.render(),
                "tools": [tool],
                "tool_choice": {"type": "tool", "name": ROUTE_TOOL},  # a call, never prose
                "messages": messages,
            }
            answer = await client.messages.create(**request)
        except Exception as exc:
            self._record_model_failure("chat:route", exc, started, ids)
            raise
        decision = read_decision(answer.content, commands, incidents)
        usage = answer.usage
        self._recorder.record(
            "chat:route",
            "chat",
            ok=True,
            duration_ms=(time.perf_counter() - started) * 1000,
            cost_usd=(
                usage.input_tokens * self._config.input_price_per_mtok
                + usage.output_tokens * self._config.output_price_per_mtok
            )
            / 1_000_000,
            extra={
                "decision": None
                if decision is None
                else {"action": decision.action, "command": decision.command, "incident": decision.incident}
            },
            **ids,
        )
        return decision

    async def _ask_model(
        self,
        *,
        channel_id: int,
        guild_name: str,
        author_id: int,
        author_name: str,
        message_id: int | None,
        text: str,
        bot_id: int,
    ) -> ChatReply:
        client = await self._model()
        now = self._clock()
        await queries.add(
            self._db,
            channel_id=channel_id,
            message_id=message_id,
            author_id=author_id,
            author_name=author_name,
            role="user",
            content=text,
            at=now,
        )
        history = await queries.recent(self._db, channel_id, max(1, self._config.history_limit))
        persona = self._prompts.get(self._config.persona)
        model = persona.meta.model or "claude-sonnet-5-5"
        temperature = persona.meta.temperature
        async with client.messages.stream(
            model=model,
            max_tokens=persona.meta.max_tokens,
            system=persona.render(guild=guild_name),
            messages=_as_messages(history),
            extra_body={"temperature": temperature} if temperature is not None else None,
        ) as stream:
            final = await stream.get_final_message()
        answer = "".join(block.text for block in final.content if block.type == "text").strip() or "…"
        answer = self._redactor.text(answer)  # a reply is a way out too
        await queries.add(
            self._db,
            channel_id=channel_id,
            message_id=None,
            author_id=bot_id,
            author_name="mendbot",
            role="assistant",
            content=answer,
            at=self._clock(),
        )
        usage = final.usage
        cost = (
            usage.input_tokens * self._config.input_price_per_mtok
            + usage.output_tokens * self._config.output_price_per_mtok
        ) / 1_000_000
        return ChatReply(answer, usage.input_tokens, usage.output_tokens, cost, model)


def _as_messages(history: list[queries.ChatLine]) -> list[Any]:
    """History as alternating user/assistant turns, starting with a user turn."""
    turns: list[dict[str, str]] = []
    for line in history:
        content = line.content if line.role == "assistant" else f"{line.author_name}: {line.content}"
        if turns and turns[-1]["role"] == line.role:
            turns[-1]["content"] += "\n" + content
        else:
            turns.append({"role": line.role, "content": content})
    while turns and turns[0]["role"] != "user":
        turns.pop(0)
    return turns
