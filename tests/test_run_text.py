"""How a run reads in chat (bot/runtime/run_text.py): a proposal's message carries its change where the
people who approve it are — a code block when it fits, an attached file when it does not — and names the
dashboard's page only when a dashboard is served; a local proposal's `local://` address is never shown."""

from __future__ import annotations

from mendbot.runtime.run_text import proposal_message

REPORT = (
    "🛠 Run #1 — fix ready for review (proposal #1)\n"
    "🧪 Proof: ✅ **proven by replay**\n"
    "✅ python -m pytest -q (2.3 s)\n"
    "Cost: $0.0025. To ship it, an allow-listed developer replies **ship it** or reacts ✅ on this message."
)
DIFF = (
    "diff --git a/cogs/fortune.py b/cogs/fortune.py\n"
    "--- a/cogs/fortune.py\n"
    "+++ b/cogs/fortune.py\n"
    "@@ -15,7 +15,7 @@\n"
    "-    return FORTUNES[sum(map(ord, name)) % (len(FORTUNES) - 3)]\n"
    "+    return FORTUNES[sum(map(ord, name)) % len(FORTUNES)]\n"
)


def test_a_small_change_is_shown_under_the_first_line() -> None:
    """The diff in a ```diff block under the headline; no file, no dashboard link when none is served."""
    content, attached = proposal_message(1, REPORT, DIFF, None)
    assert attached is None
    assert content.startswith(
        "🛠 Run #1 — fix ready for review (proposal #1)\n```diff\ndiff --git a/cogs/fortune.py"
    )
    assert "+    return FORTUNES[sum(map(ord, name)) % len(FORTUNES)]\n```\n🧪 Proof" in content
    assert "dashboard" not in content and "local://" not in content and len(content) <= 2000


def test_a_long_change_is_attached_and_said_what_it_holds() -> None:
    """A diff that would not fit one message is attached as `run-N.diff`, whole; the message says how many
    files and lines it changes, and keeps the proof, the checks and how to ship it."""
    long = DIFF + "".join(f"+# line {n} of a long change\n" for n in range(200))
    content, attached = proposal_message(7, REPORT, long, None)
    assert attached == ("run-7.diff", long.encode())
    assert "📎 The change is attached: `run-7.diff` (1 file, +201 −1)." in content
    assert content.endswith("replies **ship it** or reacts ✅ on this message.") and len(content) <= 2000


def test_the_dashboards_page_is_named_only_when_it_is_served() -> None:
    """With a dashboard served, the message ends with the run's page on it."""
    content, _ = proposal_message(3, REPORT, DIFF, "http://127.0.0.1:8766")
    assert content.endswith("\nOn the dashboard: http://127.0.0.1:8766/runs/3")
