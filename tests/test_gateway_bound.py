"""ModelGateway's worst case holds: whatever a session asks, no cap can be overspent after the fact.

Requests are drawn from the shapes the gateway forwards (every field, block and beta of the
allow-list, in any combination) with, sometimes, one part it cannot price. Upstream is a double
that bills each forwarded request the most it permits: every input token it counted written to
the cache (when it cannot count, one token per byte of the request, the gateway's assumption for
text), and every output token of the max_tokens it received.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mendbot.trust.gateway import ModelGateway
from mendbot.trust.priceable import BETAS, carries_media
from tests.test_gateway import REAL_KEY, MemoryLedger

RUN, OTHER_RUN = 7, 8
MODELS = ["claude-sonnet-5-5", "claude-haiku-4-5", "claude-opus-4-6", "claude-mystery-9"]
EPSILON = 1e-9


@dataclass
class MaxBilling:
    """What the most expensive upstream saw: the count it answers and the requests it billed."""

    count: int = 1
    count_fails: bool = False
    billed: list[dict[str, Any]] = field(default_factory=list)


@asynccontextmanager
async def max_billing_upstream() -> AsyncIterator[tuple[str, MaxBilling]]:
    """A Messages API billing each request the maximum its counted input and its max_tokens permit."""
    state = MaxBilling()

    async def count_tokens(_: web.Request) -> web.Response:
        if state.count_fails:
            return web.json_response(
                {"type": "error", "error": {"type": "api_error", "message": "x"}}, status=500
            )
        return web.json_response({"input_tokens": state.count})

    async def messages(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        state.billed.append(body)
        usage = {
            "input_tokens": 0,
            "cache_creation_input_tokens": len(raw) if state.count_fails else state.count,
            "cache_read_input_tokens": 0,
            "output_tokens": body["max_tokens"],
        }
        message = {
            "id": "msg_01max",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": "long"}],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(message)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
        for sse in (
            {"type": "message_start", "message": start},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens"},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
            {"type": "message_stop"},
        ):
            await resp.write(f"event: {sse['type']}\ndata: {json.dumps(sse)}\n\n".encode())
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", state
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- request shapes

CACHED = st.sampled_from(
    [{}, {"cache_control": {"type": "ephemeral"}}, {"cache_control": {"type": "ephemeral", "ttl": "5m"}}]
)
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}}


@st.composite
def client_tools(draw: st.DrawFn) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": draw(st.sampled_from(["Read", "Edit", "Bash", "mcp__mendbot__claim_files"]))
    }
    tool |= {"description": "a tool", "input_schema": SCHEMA, **draw(CACHED)}
    if draw(st.booleans()):
        tool["type"] = "custom"
    if draw(st.booleans()):
        tool["defer_loading"] = True
    return tool


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    text = {"type": "text", "text": "fix the dice", **draw(CACHED)}
    messages: list[dict[str, Any]] = [{"role": "user", "content": [text]}]
    if draw(st.booleans()):
        messages.append({"role": "system", "content": "# Environment", "output_config": {"effort": "low"}})
    if draw(st.booleans()):
        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
        inner = [{"type": "text", "text": "x = 1"}, *([image] if draw(st.booleans()) else [])]
        messages += [
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "look", "signature": "s"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.py"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": inner, **draw(CACHED)}
                ],
            },
        ]
    return messages


@st.composite
def priced_requests(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    """A Messages request (and its headers) built only of parts the gateway can price."""
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(MODELS)),
        "max_tokens": draw(st.integers(1, 200_000)),
        "messages": draw(histories()),
        "stream": draw(st.booleans()),
    }
    thinking: dict[str, Any] | None = draw(
        st.sampled_from(
            [None, {"type": "adaptive", "display": "updates"}, {"type": "enabled"}, {"type": "disabled"}]
        )
    )
    if thinking is not None and thinking["type"] == "enabled":
        thinking = {**thinking, "budget_tokens": draw(st.integers(1024, body["max_tokens"] + 1024))}
    optional: dict[str, Any] = {
        "thinking": thinking,
        "system": draw(
            st.sampled_from(
                [
                    None,
                    "You fix bugs.",
                    [{"type": "text", "text": "You fix bugs.", "cache_control": {"type": "ephemeral"}}],
                ]
            )
        ),
        "tools": draw(st.none() | st.lists(client_tools(), max_size=3)),
        "tool_choice": draw(
            st.sampled_from([None, {"type": "auto"}, {"type": "any", "disable_parallel_tool_use": True}])
        ),
        "output_config": draw(st.sampled_from([None, {"effort": "medium"}, {"effort": "max"}])),
        "context_management": draw(
            st.sampled_from(
                [
                    None,
                    {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
                    {"edits": [{"type": "clear_tool_uses_20250919"}]},
                ]
            )
        ),
        "metadata": draw(st.sampled_from([None, {"user_id": "session"}])),
        "temperature": draw(st.sampled_from([None, 0.0, 1.0])),
        "stop_sequences": draw(st.sampled_from([None, ["END"]])),
    }
    body |= {name: value for name, value in optional.items() if value is not None}
    betas = draw(st.lists(st.sampled_from(sorted(BETAS)), unique=True))
    return body, ({"anthropic-beta": ",".join(betas)} if betas else {})


def _server_tool(body: dict[str, Any], headers: dict[str, str]) -> None:
    body["tools"] = [
        *body.get("tools", []),
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 99},
    ]


def _mcp_server(body: dict[str, Any], headers: dict[str, str]) -> None:
    body["mcp_servers"] = [{"type": "url", "url": "https://mcp.example.invalid", "name": "m"}]


def _one_hour_cache(body: dict[str, Any], headers: dict[str, str]) -> None:
    body["system"] = [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]


def _fetched_image(body: dict[str, Any], headers: dict[str, str]) -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.invalid/a.png"}}
    body["messages"] = [*body["messages"], {"role": "user", "content": [image]}]


def _compaction(body: dict[str, Any], headers: dict[str, str]) -> None:
    body["context_management"] = {"edits": [{"type": "compact_20260112"}]}


def _fast(body: dict[str, Any], headers: dict[str, str]) -> None:
    body["speed"] = "fast"


def _long_context(body: dict[str, Any], headers: dict[str, str]) -> None:
    headers["anthropic-beta"] = ",".join(
        filter(None, [headers.get("anthropic-beta"), "context-1m-2025-08-07"])
    )


UNPRICEABLE = [_server_tool, _mcp_server, _one_hour_cache, _fetched_image, _compaction, _fast, _long_context]


@dataclass
class Scenario:
    run_cap: float
    spent_before: float
    other_runs_spent: float
    day_budget: float
    count: int
    count_fails: bool
    requests: list[tuple[dict[str, Any], dict[str, str], bool]]  # (body, headers, priceable)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    run_cap = draw(st.floats(0.0005, 3.0))
    requests = []
    for _ in range(draw(st.integers(1, 3))):
        body, headers = draw(priced_requests())
        spoil = draw(st.none() | st.sampled_from(UNPRICEABLE))
        if spoil is not None:
            spoil(body, headers)
        requests.append((body, headers, spoil is None))
    return Scenario(
        run_cap=run_cap,
        spent_before=draw(st.floats(0.0, 1.0)) * run_cap,
        other_runs_spent=draw(st.floats(0.0, 2.0)),
        day_budget=draw(st.floats(0.001, 5.0)),
        count=draw(st.integers(1, 400_000)),
        count_fails=draw(st.booleans()),
        requests=requests,
    )


@settings(
    max_examples=150,
    deadline=None,  # a shared machine: time is measured in bench/, never asserted here
    database=None,
    derandomize=True,  # the same cases on every run: a failure here is a bug, never bad luck
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
async def test_no_request_can_be_billed_past_a_cap(scenario: Scenario) -> None:
    """Billed the most it permits, each forwarded request stays within its reservation and the caps."""
    ledger = MemoryLedger(
        run_cap=scenario.run_cap,
        day_budget=scenario.day_budget,
        earlier={RUN: scenario.spent_before, OTHER_RUN: scenario.other_runs_spent},
    )
    async with max_billing_upstream() as (upstream, billing):
        billing.count, billing.count_fails = scenario.count, scenario.count_fails
        gateway = ModelGateway(upstream=upstream, api_key=REAL_KEY, ledger=ledger)
        await gateway.start()
        try:
            token = gateway.open_session(RUN)
            async with aiohttp.ClientSession() as http:
                for body, headers, priceable in scenario.requests:
                    forwarded = len(billing.billed)
                    async with http.post(
                        f"{gateway.base_url}/v1/messages?beta=true",
                        json=body,
                        headers={"x-api-key": token, **headers},
                    ) as resp:
                        answer = await resp.text()
                    event("refused: unpriceable" if not priceable else f"answered {resp.status}")
                    if not priceable:
                        assert resp.status == 400, answer
                        assert "mendbot model gateway refused this request" in answer
                        assert len(billing.billed) == forwarded
                    elif scenario.count_fails and carries_media(body):
                        assert resp.status == 503, answer
                        assert len(billing.billed) == forwarded
                    elif resp.status == 400:
                        assert "budget is spent" in answer, answer
                        assert len(billing.billed) == forwarded
                    else:
                        assert resp.status == 200, answer
                        [sent] = billing.billed[forwarded:]
                        assert sent["max_tokens"] <= body["max_tokens"]
                        budget = sent.get("thinking", {}).get("budget_tokens")
                        assert budget is None or budget < sent["max_tokens"]
        finally:
            await gateway.aclose()
    for charge in ledger.charges:
        assert charge.cost_usd <= charge.detail["reserved_usd"] * (1 + EPSILON), charge
        assert "over_reservation_usd" not in charge.detail
    assert len(ledger.charges) == len(billing.billed)
    assert ledger.spent(RUN) <= scenario.run_cap * (1 + EPSILON) + EPSILON
    day_before = scenario.spent_before + scenario.other_runs_spent
    assert ledger.spent() <= max(scenario.day_budget, day_before) * (1 + EPSILON) + EPSILON
