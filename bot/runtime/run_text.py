"""How a run reads in chat: its state with its icon, its status message, and `/run N`'s detail.

The detail asks several services (drills, the cluster's rollout, the names people go by), so it is
written here, where they are assembled, and the cog only sends it.
"""

from __future__ import annotations

from bot.improve.runs import STATE_ICONS, Run
from bot.kernel.durations import human_duration
from bot.kernel.money import usd
from bot.runtime.services import Services

__all__ = ["run_detail", "state_shown", "status_text"]


def state_shown(state: str) -> str:
    r"""A run's state in chat: its icon (bot.improve.runs.STATE_ICONS) and its name, `✅ \`resolved\``."""
    return f"{STATE_ICONS.get(state, '•')} `{state}`"  # type: ignore[call-overload]


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


async def run_detail(services: Services, run_id: int) -> str:
    """`/run N`: the status, where the run came from, why it failed, where its merge is live, its proof
    and its last events, each with who did it."""
    improve = services.improve
    run = await improve.runs.get(run_id)
    events = await improve.runs.events(run_id)
    lines = [status_text(run, [], services.clock().timestamp())]
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
    lines += [
        (f"{state_shown(e.state)}" if e.event == "transition" and e.state else f"`{e.event}`")
        + f" by {services.people.actor(e.actor)}"
        + (f" ({usd(e.cost_usd)})" if e.cost_usd else "")
        for e in events[-15:]
    ]
    return "\n".join(lines)[:2000]
