"""Run policy: whether a new run may start now, and how much the agent may spend on one.

Limits, checked in this order: a pause (persisted, so a restart keeps it), the daily budget
(spend since UTC midnight), runs per hour per user, runs per hour overall, and concurrency
(runs holding a working slot). Each refusal names the limit and when it lifts, as a Discord
timestamp, so the person asking knows whether to wait a minute or until tomorrow.

Runs the bot starts by itself (origin `autonomous`) spend from a pool of their own,
`improve.autonomous_daily_budget_usd`, and requested runs from `improve.daily_budget_usd`: neither
can starve the other. An autonomous run is refused when `improve.autonomy` is off, when paused,
when its pool is spent, and by concurrency; the hourly limits count people's requests only.

Spend is counted from run events by the time it was spent, so a run that straddles midnight
is charged to each day for what it cost that day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from mendbot.db import drills as drill_queries
from mendbot.db import runs as queries
from mendbot.db.core import Connection
from mendbot.improve.runs import BUSY_STATES, Run, RunOrigin, RunService
from mendbot.kernel.errors import UserError
from mendbot.kernel.log import get_logger
from mendbot.kernel.money import usd
from mendbot.kernel.sections import ImproveConfig

__all__ = ["BudgetLedger", "BudgetReport", "Limit", "Policy", "PolicyRefusal", "discord_time"]

_log = get_logger(__name__)
_PAUSE_KEY = "improve.paused"
_HOUR = 3600.0

Limit = Literal[
    "paused", "daily_budget", "user_hourly", "hourly", "concurrency", "autonomy_off", "autonomous_budget"
]


def discord_time(ts: float, style: str = "R") -> str:
    """A Discord timestamp ("in 3 hours"), rendered in each reader's own time zone."""
    return f"<t:{int(ts)}:{style}>"


class PolicyRefusal(UserError):
    """A new run refused by a limit; the message says which and when it lifts."""

    def __init__(self, limit: Limit, message: str, *, resets_at: float | None = None) -> None:
        self.limit = limit
        self.resets_at = resets_at
        super().__init__(message)


class BudgetReport(msgspec.Struct, frozen=True):
    spent_today_usd: float
    daily_budget_usd: float
    per_run_budget_usd: float
    day_resets_at: float
    runs_this_hour: int
    runs_per_hour: int
    runs_per_hour_per_user: int
    per_user: dict[int, int] = msgspec.field(default_factory=dict)  # runs started this hour by user id
    busy_runs: list[int] = msgspec.field(default_factory=list)
    concurrency: int = 1
    paused_by: int | None = None
    protected_paths: list[str] = msgspec.field(default_factory=list)
    autonomy: str = "off"
    autonomous_severity: str = "error"
    autonomous_spent_today_usd: float = 0.0
    autonomous_daily_budget_usd: float = 0.0
    drill_spent_today_usd: float = 0.0  # fire drills' runs: shown apart, never counted above

    def render(self) -> str:
        """The /budget answer."""
        if self.autonomy == "off":
            autonomous = "**On my own:** off (runs start only when asked)"
        else:
            spent, budget = self.autonomous_spent_today_usd, self.autonomous_daily_budget_usd
            autonomous = (
                f"**On my own:** {self.autonomy} on {self.autonomous_severity} incidents;"
                f" spent today {usd(spent)} of {usd(budget)}"
            )
        lines = [
            f"**Spent today:** {usd(self.spent_today_usd)} of {usd(self.daily_budget_usd)}"
            f" (resets {discord_time(self.day_resets_at)})",
            autonomous,
            f"**Per run:** up to {usd(self.per_run_budget_usd)}",
            *(
                [f"**Fire drills:** {usd(self.drill_spent_today_usd)} today (apart: not counted above)"]
                if self.drill_spent_today_usd
                else []
            ),
            f"**Runs this hour:** {self.runs_this_hour} of {self.runs_per_hour}"
            f" ({self.runs_per_hour_per_user} per person)",
        ]
        if self.per_user:
            people = ", ".join(f"<@{user}> {count}" for user, count in sorted(self.per_user.items()))
            lines.append(f"**By person:** {people}")
        working = ", ".join(f"#{run_id}" for run_id in self.busy_runs) or "none"
        lines.append(f"**Working:** {working} (at most {self.concurrency} at a time)")
        if self.paused_by is not None:
            lines.append(f"**Paused** by <@{self.paused_by}>; /resume to continue.")
        if self.protected_paths:
            shown = ", ".join(f"`{path}`" for path in self.protected_paths)
            lines.append(f"**Protected** (a run needs security=true and `ship it security`): {shown}")
        return "\n".join(lines)


class Policy:
    def __init__(self, config: ImproveConfig, db: Connection, clock: Callable[[], datetime]) -> None:
        self._config = config
        self._db = db
        self._clock = clock
        self._paused_by: int | None = None

    @property
    def paused(self) -> bool:
        """Whether new runs are paused (as of the last load, pause, resume or check)."""
        return self._paused_by is not None

    @property
    def paused_by(self) -> int | None:
        return self._paused_by

    async def load(self) -> None:
        """Read the persisted pause; call once at start-up."""
        stored = await queries.get_setting(self._db, _PAUSE_KEY)
        self._paused_by = int(stored["by"]) if stored else None

    async def pause(self, user_id: int) -> bool:
        """Stop new runs from starting; False if they were already paused."""
        await self.load()
        if self._paused_by is not None:
            return False
        await queries.set_setting(self._db, _PAUSE_KEY, {"by": user_id, "at": self._now()})
        self._paused_by = user_id
        _log.info("runs_paused", user_id=user_id)
        return True

    async def resume(self, user_id: int) -> bool:
        """Let runs start again; False if they were not paused."""
        await self.load()
        if self._paused_by is None:
            return False
        await queries.delete_setting(self._db, _PAUSE_KEY)
        self._paused_by = None
        _log.info("runs_resumed", user_id=user_id)
        return True

    async def check_start(self, user_id: int, origin: RunOrigin = "requested") -> None:
        """Raise `PolicyRefusal` if `user_id` may not start a run now (or the bot, for `autonomous`)."""
        await self.load()
        if origin == "autonomous" and self._config.autonomy == "off":
            raise PolicyRefusal("autonomy_off", "I don't start runs on my own: `improve.autonomy` is off.")
        if self._paused_by is not None:
            raise PolicyRefusal("paused", f"Runs are paused by <@{self._paused_by}>; /resume to continue.")
        if origin == "autonomous":
            await self._check_autonomous_budget()
            await self._check_concurrency()
            return

        now = self._now()
        spent = await self.spent_today()
        if spent >= self._config.daily_budget_usd:
            resets = self._next_midnight()
            raise PolicyRefusal(
                "daily_budget",
                f"Today's budget is spent ({usd(spent)} of {usd(self._config.daily_budget_usd)});"
                f" it resets {discord_time(resets)}.",
                resets_at=resets,
            )

        recent = await queries.created_since(self._db, now - _HOUR, "requested")
        mine = [created for requester, created in recent if requester == user_id]
        per_user = self._config.runs_per_hour_per_user
        if len(mine) >= per_user:
            resets = _window_reset(mine, per_user)
            raise PolicyRefusal(
                "user_hourly",
                f"You have started {len(mine)} runs in the last hour (limit {per_user} per person);"
                f" you can start another {discord_time(resets)}.",
                resets_at=resets,
            )
        overall = self._config.runs_per_hour
        if len(recent) >= overall:
            resets = _window_reset([created for _, created in recent], overall)
            raise PolicyRefusal(
                "hourly",
                f"{len(recent)} runs have started in the last hour (limit {overall});"
                f" the next can start {discord_time(resets)}.",
                resets_at=resets,
            )
        await self._check_concurrency()

    async def _check_autonomous_budget(self) -> None:
        spent = await self.spent_today("autonomous")
        budget = self._config.autonomous_daily_budget_usd
        if spent >= budget:
            resets = self._next_midnight()
            raise PolicyRefusal(
                "autonomous_budget",
                f"today's budget for runs of my own is spent ({usd(spent)} of {usd(budget)});"
                f" it resets {discord_time(resets)}.",
                resets_at=resets,
            )

    async def _check_concurrency(self) -> None:
        busy = await queries.busy(self._db, BUSY_STATES)
        if len(busy) >= self._config.concurrency:
            oldest, state = busy[0]
            raise PolicyRefusal(
                "concurrency",
                f"{len(busy)} run(s) already working (limit {self._config.concurrency} at a time);"
                f" wait for run #{oldest} ({state}) to finish.",
            )

    async def spent_today(self, origin: RunOrigin = "requested") -> float:
        """What runs of `origin` have cost since UTC midnight."""
        return await queries.spent_since(self._db, self._midnight(), origin)

    def daily_budget(self, origin: RunOrigin) -> float:
        """The day's pool that runs of `origin` spend from."""
        if origin == "autonomous":
            return self._config.autonomous_daily_budget_usd
        return self._config.daily_budget_usd

    async def remaining_run_budget(self, run: Run) -> float:
        """What the agent may still spend on `run`: the least of its own cap and today's remainder."""
        return max(0.0, min(await self.remaining(run)))

    async def remaining(self, run: Run) -> tuple[float, float]:
        """(what is left of `run`'s own cap, what is left of today's budget for its origin), in USD.

        The model gateway checks this before every request, so an autonomous run stops when the
        autonomous pool runs dry even if the requested one has plenty left.
        """
        per_run = self._config.max_budget_usd_per_run - run.cost_usd
        today = self.daily_budget(run.origin) - await self.spent_today(run.origin)
        return per_run, today

    async def budget(self) -> BudgetReport:
        """Spend and limits for /budget."""
        await self.load()
        recent = await queries.created_since(self._db, self._now() - _HOUR, "requested")
        busy = await queries.busy(self._db, BUSY_STATES)
        return BudgetReport(
            spent_today_usd=await self.spent_today(),
            daily_budget_usd=self._config.daily_budget_usd,
            per_run_budget_usd=self._config.max_budget_usd_per_run,
            day_resets_at=self._next_midnight(),
            runs_this_hour=len(recent),
            runs_per_hour=self._config.runs_per_hour,
            runs_per_hour_per_user=self._config.runs_per_hour_per_user,
            per_user=dict(Counter(requester for requester, _ in recent)),
            busy_runs=[run_id for run_id, _ in busy],
            concurrency=self._config.concurrency,
            paused_by=self._paused_by,
            protected_paths=list(self._config.protected_paths),
            autonomy=self._config.autonomy,
            autonomous_severity=self._config.autonomous_severity,
            autonomous_spent_today_usd=await self.spent_today("autonomous"),
            autonomous_daily_budget_usd=self._config.autonomous_daily_budget_usd,
            drill_spent_today_usd=await drill_queries.drill_spent_since(self._db, self._midnight()),
        )

    def _now(self) -> float:
        return self._clock().timestamp()

    def _midnight(self) -> float:
        now = self._clock().astimezone(UTC)
        return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def _next_midnight(self) -> float:
        return (datetime.fromtimestamp(self._midnight(), UTC) + timedelta(days=1)).timestamp()


class BudgetLedger:
    """The model gateway's view of the budget: what a run may still spend, and where its spend goes.

    Each model request's cost is a `model_request` event of the run, so it counts toward the run's
    cost and today's spend of the run's origin at once (`Policy.spent_today` sums run events).
    """

    def __init__(self, policy: Policy, runs: RunService) -> None:
        self._policy = policy
        self._runs = runs

    async def remaining(self, run_id: int) -> tuple[float, float]:
        return await self._policy.remaining(await self._runs.get(run_id))

    async def charge(self, run_id: int, cost_usd: float, detail: dict[str, Any]) -> None:
        await self._runs.event(run_id, "model_request", actor="gateway", cost_usd=cost_usd, detail=detail)


def _window_reset(created: list[float], limit: int) -> float:
    """When enough of these runs (oldest first, all within the hour) age out to get under `limit`."""
    return created[len(created) - limit] + _HOUR
