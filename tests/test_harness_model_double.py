"""Tests of the loopback Anthropic Messages API double (tests/harness/model_double.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anthropic
import pytest

from tests.harness.model_double import EXHAUSTED_TEXT, Hold, ModelDouble, error, text, tool_use, turn


@pytest.fixture
async def model() -> AsyncIterator[ModelDouble]:
    async with ModelDouble() as double:
        yield double


def _client(model: ModelDouble) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=model.base_url, api_key="k", max_retries=0)


async def test_streaming_delivers_scripted_text_and_records_history(model: ModelDouble) -> None:
    """A streamed request receives the scripted text and the double records the sent messages."""
    model.script(text("Hello from the double, with a longer reply."))
    history: list[Any] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "tell me more"},
    ]
    client = _client(model)
    async with client, client.messages.stream(model="claude-x", max_tokens=100, messages=history) as stream:
        chunks = [chunk async for chunk in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(chunks) == "Hello from the double, with a longer reply."
    assert len(chunks) >= 2
    assert final.stop_reason == "end_turn"
    [req] = model.message_requests
    assert req.json["stream"] is True
    assert req.json["messages"] == history
    assert "anthropic-version" in req.headers
    assert "k" in (req.headers.get("x-api-key"), req.headers.get("authorization", "").removeprefix("Bearer "))


async def test_create_returns_scripted_tool_use(model: ModelDouble) -> None:
    """A non-streamed request gets the scripted tool_use block with its input and id."""
    scripted = tool_use(
        "Edit", {"file_path": "/r/a.py", "old_string": "a", "new_string": "b"}, text="Fixing."
    )
    model.script(scripted)
    async with _client(model) as client:
        msg = await client.messages.create(
            model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "fix it"}]
        )
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    block = msg.content[1]
    assert isinstance(block, anthropic.types.ToolUseBlock)
    assert block.id == scripted.tool_use_id and block.id.startswith("toolu_01")
    assert block.name == "Edit"
    assert block.input == {"file_path": "/r/a.py", "old_string": "a", "new_string": "b"}


async def test_streamed_tool_use_input_and_callable_turn_sees_tool_result(model: ModelDouble) -> None:
    """A streamed tool_use input survives chunking; a callable turn reads the client's tool_result."""
    call = tool_use("Bash", {"command": "echo hi", "description": "say hi"})
    model.script(call, lambda req: text(f"saw: {req['messages'][-1]['content'][0]['content']}"))
    messages: list[Any] = [{"role": "user", "content": "run it"}]
    async with _client(model) as client:
        async with client.messages.stream(model="m", max_tokens=50, messages=messages) as stream:
            first = await stream.get_final_message()
        assert first.content[0].type == "tool_use"
        assert first.content[0].input == {"command": "echo hi", "description": "say hi"}
        messages += [
            {"role": "system", "content": "extra entries are tolerated"},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.tool_use_id, "content": "hi\n"}],
            },
        ]
        second = await client.messages.create(model="m", max_tokens=50, messages=messages)
    assert second.content[0].type == "text"
    assert second.content[0].text == "saw: hi\n"
    assert model.tool_results() == [(call.tool_use_id, "hi\n", False)]


async def test_exhausted_script_answers_placeholder_and_counts(model: ModelDouble) -> None:
    """An empty script answers the placeholder text (never hangs) and counts each occurrence."""
    async with _client(model) as client:
        for _ in range(2):
            msg = await client.messages.create(
                model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
            assert msg.content[0].type == "text"
            assert msg.content[0].text == EXHAUSTED_TEXT
    assert model.exhausted == 2


async def test_error_turn_raises_api_status_error(model: ModelDouble) -> None:
    """An error(...) turn surfaces as the SDK's APIStatusError carrying the status and type."""
    model.script(error(529, "overloaded_error", "Overloaded"), turn(text("after").content[0]))
    async with _client(model) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            await client.messages.create(
                model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
            )
        assert info.value.status_code == 529
        assert isinstance(info.value.body, dict)
        assert info.value.body["error"]["type"] == "overloaded_error"
        msg = await client.messages.create(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert msg.content[0].type == "text" and msg.content[0].text == "after"
    assert model.remaining == 0


async def test_side_endpoints_and_unknown_paths(model: ModelDouble) -> None:
    """/api/hello and count_tokens answer; an unknown path is a recorded 404."""
    async with _client(model) as client:
        count = await client.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hi"}])
        assert count.input_tokens > 0
        hello = await client.get("/api/hello", cast_to=object)
        assert hello is not None
        with pytest.raises(anthropic.NotFoundError):
            await client.get("/v1/nope", cast_to=object)
    assert [r.path for r in model.unknown] == ["/v1/nope"]
    assert model.paths == ["/v1/messages/count_tokens", "/api/hello", "/v1/nope"]


async def test_a_client_gone_before_its_answer_is_counted_not_logged_as_an_error(
    model: ModelDouble, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that goes away while its answer is held — a run stopped, its CLI killed with it — leaves
    nobody to answer: the double counts it, and logs no error with a traceback (aiohttp's "Error
    handling request", in the middle of the playground's output)."""
    hold = Hold(text("too late"))
    model.script(hold)
    where = urlsplit(model.base_url)
    _, writer = await asyncio.open_connection(where.hostname, where.port)
    body = json.dumps(
        {
            "model": "claude-x",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
    ).encode()
    head = f"POST /v1/messages HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: application/json\r\n"
    writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    await asyncio.wait_for(hold.reached.wait(), 10)
    # Gone at once, as a killed process's connection goes: reset, not a polite close the double would
    # only read after answering.
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
    hold.release.set()

    async def abandoned() -> None:
        while model.abandoned == 0:  # noqa: ASYNC110 - a count the double's handler keeps
            await asyncio.sleep(0.01)

    await asyncio.wait_for(abandoned(), 10)
    assert "Error handling request" not in caplog.text
