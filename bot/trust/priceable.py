"""What the model gateway forwards: the grammar of a Messages request whose cost it can bound.

The gateway prices a request as its input tokens (all of them written to the cache, the dearest
way to read input) plus ``max_tokens`` of output, and caps ``max_tokens`` to the budget.  That
bound only holds for requests that cost nothing else: a server tool (web search, code execution,
an MCP connector) bills per use and for the tokens it pulls in, server-side compaction runs a
second model call, a one-hour cache write costs 2x input, a fast or regional tier costs a
multiple, and a long-context beta changes the price per token.  None of that shows in the
request's token count.  So the gateway forwards only what this module allows, and refuses the
rest before anything leaves:

- top-level fields: ``FIELDS`` (what the bundled Claude Code CLI sends, plus the sampling
  parameters, which do not change the price); anything else, ``mcp_servers`` included, is refused;
- ``tools``: client tools only (no ``type``, or ``"custom"``), keyed by ``TOOL_KEYS``;
- message content blocks: ``BLOCK_TYPES``; images and documents only inline (base64 or text), never
  a URL or a file id the API would fetch; a tool added mid-conversation is held to the tool rules;
- ``cache_control``: ``{"type": "ephemeral"}``, with ``"ttl": "5m"`` at most;
- ``thinking``, ``output_config``, ``context_management`` (only edits that clear context),
  ``tool_choice`` and ``metadata``: the keys and kinds named below;
- the ``anthropic-beta`` header: ``BETAS``; the query string: ``beta=true``.

Refusing beats dropping: a dropped field would change what the agent asked for without telling it.
The one change made to what is forwarded is the gateway's cap on ``max_tokens``, with ``fit_thinking``
keeping a thinking budget below it.
A refusal names the field (untrusted names are quoted and capped), so the agent, and whoever reads
the run, sees why.  The fields and betas are those the bundled CLI was seen sending; a newer CLI
that sends something new is refused with that name until it is priced here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "BETAS",
    "BLOCK_TYPES",
    "FIELDS",
    "THINKING_MIN_BUDGET",
    "TOOL_KEYS",
    "Unpriceable",
    "carries_media",
    "check_betas",
    "check_query",
    "check_request",
    "fit_thinking",
]

FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "context_management",
        "metadata",
        "stream",
        # Sampling only; the price per token and the token bounds stay as they are.
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
    }
)
# A client tool: the agent's CLI runs it, the model only writes its input (output tokens).
TOOL_KEYS = frozenset(
    {"type", "name", "description", "input_schema", "cache_control", "defer_loading", "eager_input_streaming"}
)
CLIENT_TOOL_TYPES = frozenset({"custom"})
# Blocks that are input and nothing else: their tokens are in the request's count.
BLOCK_TYPES = frozenset(
    {
        "text",
        "image",
        "document",
        "search_result",
        "tool_use",
        "tool_result",
        "tool_reference",
        "tool_addition",
        "tool_removal",
        "thinking",
        "redacted_thinking",
    }
)
_SOURCE_TYPES = {"image": frozenset({"base64"}), "document": frozenset({"base64", "text"})}
_MEDIA_TYPES = frozenset(_SOURCE_TYPES)
_MESSAGE_KEYS = frozenset({"role", "content", "output_config"})
_ROLES = frozenset({"user", "assistant", "system"})
_CACHE_CONTROL_KEYS = frozenset({"type", "ttl"})
_CACHE_TTLS = frozenset({"5m"})
_THINKING_KEYS = frozenset({"type", "budget_tokens", "display"})
_THINKING_TYPES = frozenset({"enabled", "adaptive", "disabled"})
_OUTPUT_CONFIG_KEYS = frozenset({"effort"})
_CONTEXT_MANAGEMENT_KEYS = frozenset({"edits"})
# Edits that drop old thinking or tool results from the input: they can only make it smaller.
_CONTEXT_EDITS = frozenset({"clear_thinking_20251015", "clear_tool_uses_20250919"})
_TOOL_CHOICE_KEYS = frozenset({"type", "name", "disable_parallel_tool_use"})
_TOOL_CHOICE_TYPES = frozenset({"auto", "any", "tool", "none"})
_METADATA_KEYS = frozenset({"user_id"})
# What the bundled CLI sends (claude-agent-sdk 0.2.188): Claude Code itself, interleaved and
# displayed thinking, context clearing, effort (per request and per turn), tools changing
# mid-conversation, thinking token counts. None changes what a token costs. Not here, among
# others: context-1m (a dearer price per token past 200k input), fast-mode, extended-cache-ttl,
# mcp-servers, web-search, server-side-fallback (another model may answer).
BETAS = frozenset(
    {
        "claude-code-20250219",
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
        "effort-2025-11-24",
        "per-turn-control-2026-07-01",
        "mid-conversation-tool-changes-2026-07-01",
        "thinking-token-count-2026-05-13",
        "thinking-display-updates-2026-08-18",
    }
)
_QUERY = {"beta": frozenset({"true"})}
_NAME_CAP = 40


class Unpriceable(ValueError):
    """The request asks for something whose cost the gateway cannot bound; ``str()`` says what."""


def _quote(value: object) -> str:
    """An untrusted name for a refusal: JSON-quoted, capped, so it cannot run on or fake structure."""
    text = str(value)
    capped = text if len(text) <= _NAME_CAP else text[:_NAME_CAP] + "…"
    return json.dumps(capped, ensure_ascii=True)


def _names(keys: Iterable[object]) -> str:
    """At most five names, quoted, in a stable order."""
    return ", ".join(_quote(k) for k in sorted(str(k) for k in keys)[:5])


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Unpriceable(f"{where}: an object is expected")
    return value


def _keys(value: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = set(value) - allowed
    if unknown:
        raise Unpriceable(f"{where}: {_names(unknown)} not forwarded (allowed: {', '.join(sorted(allowed))})")


def _kind(value: dict[str, Any], allowed: frozenset[str], where: str) -> str:
    kind = value.get("type")
    if kind not in allowed:
        raise Unpriceable(
            f"{where}: type {_quote(kind)} not forwarded (allowed: {', '.join(sorted(allowed))})"
        )
    return str(kind)


def _cache_control(owner: dict[str, Any], where: str) -> None:
    if "cache_control" not in owner:
        return
    control = _object(owner["cache_control"], f"{where}.cache_control")
    _keys(control, _CACHE_CONTROL_KEYS, f"{where}.cache_control")
    if control.get("type") != "ephemeral":
        raise Unpriceable(f'{where}.cache_control: only type "ephemeral" is forwarded')
    if "ttl" in control and control["ttl"] not in _CACHE_TTLS:
        raise Unpriceable(
            f"{where}.cache_control: ttl {_quote(control['ttl'])} not forwarded "
            "(a write longer than 5 minutes costs more than the gateway reserves)"
        )


def _client_tool(value: object, where: str) -> None:
    tool = _object(value, where)
    if "type" in tool and tool["type"] not in CLIENT_TOOL_TYPES:
        raise Unpriceable(
            f"{where}: {_quote(tool['type'])} is a server tool, billed per use beyond its tokens; "
            'only client tools (no type, or "custom") are forwarded'
        )
    _keys(tool, TOOL_KEYS, where)
    if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
        raise Unpriceable(f"{where}: a client tool needs a name and an input_schema")
    _cache_control(tool, where)


def _tool_reference(value: object, where: str) -> None:
    _kind(_object(value, where), frozenset({"tool_reference"}), where)


def _block(value: object, where: str, *, nested: bool) -> None:
    block = _object(value, where)
    kind = _kind(block, BLOCK_TYPES, where)
    _cache_control(block, where)
    if kind in _SOURCE_TYPES:
        source = _object(block.get("source"), f"{where}.source")
        _kind(source, _SOURCE_TYPES[kind], f"{where}.source")
    elif kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            if nested:
                raise Unpriceable(f"{where}: a tool result inside a tool result is not forwarded")
            for i, inner in enumerate(content):
                _block(inner, f"{where}.content[{i}]", nested=True)
        elif content is not None and not isinstance(content, str):
            raise Unpriceable(f"{where}.content: a string or a list of blocks is expected")
    elif kind == "tool_addition":
        tool = _object(block.get("tool"), f"{where}.tool")
        added = _kind(tool, frozenset({"tool_reference", "tool_definition"}), f"{where}.tool")
        if added == "tool_definition":
            _client_tool(tool.get("definition"), f"{where}.tool.definition")
    elif kind == "tool_removal":
        _tool_reference(block.get("tool"), f"{where}.tool")


def _content(content: object, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise Unpriceable(f"{where}: a string or a list of blocks is expected")
    for i, block in enumerate(content):
        _block(block, f"{where}[{i}]", nested=False)


def _output_config(value: object, where: str) -> None:
    config = _object(value, where)
    _keys(config, _OUTPUT_CONFIG_KEYS, where)


def _messages(messages: object) -> None:
    if not isinstance(messages, list):
        raise Unpriceable("messages: a list is expected")
    for i, item in enumerate(messages):
        where = f"messages[{i}]"
        message = _object(item, where)
        _keys(message, _MESSAGE_KEYS, where)
        if message.get("role") not in _ROLES:
            raise Unpriceable(f"{where}: role {_quote(message.get('role'))} not forwarded")
        _content(message.get("content"), f"{where}.content")
        if "output_config" in message:
            _output_config(message["output_config"], f"{where}.output_config")


def _system(system: object) -> None:
    if isinstance(system, str):
        return
    if not isinstance(system, list):
        raise Unpriceable("system: a string or a list of text blocks is expected")
    for i, block in enumerate(system):
        where = f"system[{i}]"
        _kind(_object(block, where), frozenset({"text"}), where)
        _cache_control(block, where)


def check_request(body: Mapping[str, Any]) -> None:
    """Raise ``Unpriceable`` unless every part of this Messages request body is allowed."""
    _keys(dict(body), FIELDS, "request")
    if "messages" in body:
        _messages(body["messages"])
    if "system" in body:
        _system(body["system"])
    if "tools" in body:
        if not isinstance(body["tools"], list):
            raise Unpriceable("tools: a list is expected")
        for i, tool in enumerate(body["tools"]):
            _client_tool(tool, f"tools[{i}]")
    if "tool_choice" in body:
        choice = _object(body["tool_choice"], "tool_choice")
        _keys(choice, _TOOL_CHOICE_KEYS, "tool_choice")
        _kind(choice, _TOOL_CHOICE_TYPES, "tool_choice")
    if "thinking" in body:
        thinking = _object(body["thinking"], "thinking")
        _keys(thinking, _THINKING_KEYS, "thinking")
        _kind(thinking, _THINKING_TYPES, "thinking")
    if "output_config" in body:
        _output_config(body["output_config"], "output_config")
    if "context_management" in body:
        management = _object(body["context_management"], "context_management")
        _keys(management, _CONTEXT_MANAGEMENT_KEYS, "context_management")
        edits = management.get("edits", [])
        if not isinstance(edits, list):
            raise Unpriceable("context_management.edits: a list is expected")
        for i, edit in enumerate(edits):
            where = f"context_management.edits[{i}]"
            _kind(_object(edit, where), _CONTEXT_EDITS, where)
    if "metadata" in body:
        _keys(_object(body["metadata"], "metadata"), _METADATA_KEYS, "metadata")


def check_betas(header: str | None) -> None:
    """Raise ``Unpriceable`` if the ``anthropic-beta`` header names a beta not in ``BETAS``."""
    if header is None:
        return
    unknown = {name.strip() for name in header.split(",") if name.strip()} - BETAS
    if unknown:
        raise Unpriceable(f"anthropic-beta: {_names(unknown)} not forwarded")


def check_query(query: Mapping[str, str]) -> None:
    """Raise ``Unpriceable`` unless the query string is empty or ``beta=true``."""
    for name, value in query.items():
        if value not in _QUERY.get(name, frozenset()):
            raise Unpriceable(f"query: {_quote(name)}={_quote(value)} not forwarded")


def carries_media(body: Mapping[str, Any]) -> bool:
    """Whether any message holds an image or a document, whose tokens its bytes do not bound.

    Call after ``check_request``: it assumes the shapes that function allows.
    """
    for message in body.get("messages") or []:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") in _MEDIA_TYPES:
                return True
            inner = block.get("content") if block.get("type") == "tool_result" else None
            if isinstance(inner, list) and any(b.get("type") in _MEDIA_TYPES for b in inner):
                return True
    return False


THINKING_MIN_BUDGET = 1024  # the API rejects a smaller thinking.budget_tokens


def _positive(value: object) -> int | None:
    """``value`` if it is a positive integer (JSON booleans excluded), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def fit_thinking(body: dict[str, Any], max_tokens: int) -> None:
    """Keep thinking.budget_tokens below `max_tokens` (as the gateway capped it); drop thinking when that
    leaves under the API's minimum."""
    thinking = body.get("thinking")
    asked = _positive(thinking.get("budget_tokens")) if isinstance(thinking, dict) else None
    if not isinstance(thinking, dict) or asked is None:
        return
    budget = min(asked, max_tokens - 1)
    if budget >= THINKING_MIN_BUDGET:
        body["thinking"] = {**thinking, "budget_tokens": budget}
        return
    del body["thinking"]
    # The CLI asks to clear old thinking blocks, which the API refuses when thinking is off.
    management = body.get("context_management")
    if isinstance(management, dict) and isinstance(management.get("edits"), list):
        edits = [
            e
            for e in management["edits"]
            if not (isinstance(e, dict) and str(e.get("type", "")).startswith("clear_thinking"))
        ]
        if edits:
            body["context_management"] = {**management, "edits": edits}
        else:
            del body["context_management"]
