"""The scripted model for tests: the product's own (`bot/tools/demo_model.py`, which the demo serves too).

Kept under this name so tests read `from tests.harness.model_double import ModelDouble, text, tool_use`.
"""

from mendbot.tools.demo_model import (
    EXHAUSTED_TEXT,
    ErrorTurn,
    Hold,
    ModelDouble,
    RecordedRequest,
    ScriptItem,
    ToolResult,
    Turn,
    error,
    text,
    text_block,
    tool_use,
    tool_use_block,
    turn,
)

__all__ = [
    "EXHAUSTED_TEXT",
    "ErrorTurn",
    "Hold",
    "ModelDouble",
    "RecordedRequest",
    "ScriptItem",
    "ToolResult",
    "Turn",
    "error",
    "text",
    "text_block",
    "tool_use",
    "tool_use_block",
    "turn",
]
