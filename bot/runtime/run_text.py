"""How a run reads in chat: its state with its icon, its status message, `/run N`'s detail, and a
proposal's message with its diff.

The detail asks several services (drills, the cluster's rollout, the names people go by), so it is
written here, where they are assembled, and the cog only sends it.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from mendbot.improve.run_story import Stage, actor_words
from mendbot.improve.run_story import stages as story_stages
from mendbot.improve.runs import TERMINAL_STATES, Run, state_label
from mendbot.kernel.durations import human_duration
from mendbot.kernel.durations import took as took_words
from mendbot.kernel.money import usd
from mendbot.runtime.services import Services

__all__ = ["proposal_message", "run_detail", "state_shown", "status_text"]


def state_shown(state: str) -> str:
    """A run's state in chat as people say it, with its icon: `⏪ rolled back`, `👀 awaiting approval`
    (`mendbot.improve.runs.state_label`, as the dashboard shows it)."""
    return state_label(state)


def status_text(run: Run, lines: list[str], now: float) -> str:
    """A run's status message: who, what, its state, how long and what it cost, then its last lines."""
    elapsed = max(0.0, now - run.created_at)
    mine = " · on my own" if run.origin == "autonomous" else ""
    head = (
        f"🤖 **Run #{run.id}** · {run.kind}{mine} · {state_shown(run.state)} · {human_duration(elapsed)}"
        f" · {usd(run.cost_usd)}\n"
        f"> {run.description[:200]}"
    )
    return "\n".join([head, *(f"{line}" for line in lines[-12:])])[:2000]


def _stage_lines(stages: list[Stage], name_of: Callable[[int], str | None]) -> list[str]:
    """Each stage in one line — its state, how long it took, what it cost, who began it and what it
    carried — as the dashboard's timeline heads it (`mendbot.improve.run_story`)."""
    lines = []
    for stage in stages:
        took = f" · {took_words(stage.took)}{' so far' if stage.ongoing else ''}"
        cost = f" · {usd(stage.cost_usd)}" if stage.cost_usd else ""
        who = actor_words(str(stage.head["actor"]), name_of)
        note = f": {stage.note}" if stage.note else ""
        lines.append(f"{state_shown(stage.state)}{took}{cost} — {who}{note}")
    return lines


async def run_detail(services: Services, run_id: int) -> str:
    """`/run N`: the status, where the run came from, why it failed, where its merge is live, its proof
    and its stages — each with how long it took by the bot's clock (the status message's and the
    dashboard's) and who did it, in people's words."""
    improve = services.improve
    run = await improve.runs.get(run_id)
    events = await improve.runs.events(run_id)
    now = services.clock().timestamp()
    lines = [status_text(run, [], now)]
    if await services.deploy.is_drill_run(run):
        lines.append("**Origin:** 🧯 a fire drill (`/drill`) — its proposal never merges.")
    elif run.origin == "autonomous":
        lines.append("**Origin:** autonomous — I started it myself (`improve.autonomy`); nobody asked.")
    else:
        lines.append(f"**Origin:** requested by <@{run.requester_id}> (id {run.requester_id})")
    if run.failure_reason:
        lines.append(f"**Failed while {run.failure_stage}:** {run.failure_reason[:500]}")
    merged = next((str(e.detail["merged_sha"]) for e in events if e.detail.get("merged_sha")), None)
    if merged is not None and (live_on := await services.cluster.live_on(merged, run.id)):
        lines.append(live_on)
    proof = await improve.proof_of(run_id)
    if proof is not None:
        lines.append(proof.chat()[:800])
    ended = run.updated_at if run.state in TERMINAL_STATES else None
    stages = story_stages([msgspec.structs.asdict(e) for e in events], ended=ended, now=now)
    told = _stage_lines(stages, services.people.name)
    head = "\n".join(lines)
    while told and len(head) + len("\n**Stages:**\n") + len("\n".join(told)) > 2000:
        told = told[1:]  # the latest stages are what is asked about; the first go when it is long
    return (head + ("\n**Stages:**\n" + "\n".join(told) if told else ""))[:2000]


_MESSAGE_LIMIT = 2000  # Discord's, for a message's text
_DIFF_FILE = "run-{run_id}.diff"


def _diff_summary(diff: str) -> str:
    """ "2 files, +3 −1": what an attached diff holds, said in the message beside it."""
    files = sum(1 for line in diff.splitlines() if line.startswith("diff --git "))
    added = sum(1 for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff.splitlines() if line.startswith("-") and not line.startswith("---"))
    return f"{files} file{'s' if files != 1 else ''}, +{added} −{removed}"


def proposal_message(
    run_id: int, text: str, diff: str | None, dashboard: str | None
) -> tuple[str, tuple[str, bytes] | None]:
    """A proposal's message where the people who approve it are: its change under its first line — in a
    code block when the whole message fits, else as an attached file (name, bytes) with what it holds
    said — and the run's page on the dashboard when one is served (`dashboard`: its base address). A
    local proposal has no address that opens anything; its diff is the proposal."""
    head, _, rest = text.partition("\n")
    page = f"\nOn the dashboard: {dashboard.rstrip('/')}/runs/{run_id}" if dashboard else ""
    if not diff or not diff.strip():
        return f"{head}\n{rest}{page}"[:_MESSAGE_LIMIT], None
    block = f"```diff\n{diff.strip()}\n```"
    whole = f"{head}\n{block}\n{rest}{page}"
    if len(whole) <= _MESSAGE_LIMIT and "```" not in diff:  # a diff holding a fence would break out of it
        return whole, None
    name = _DIFF_FILE.format(run_id=run_id)
    attached = f"📎 The change is attached: `{name}` ({_diff_summary(diff)})."
    return f"{head}\n{attached}\n{rest}{page}"[:_MESSAGE_LIMIT], (name, diff.encode())
