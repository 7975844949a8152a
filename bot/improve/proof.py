"""A proof of fix as the pipeline, the approval gate and the reports see it: its items — each an outcome on
the base and one on the branch (recorded and live, after a deploy) with what was observed — its verdict,
how it reads in a proposal and in chat, and how it is loaded from the `proofs` table. How a proof is taken
and judged is `bot.improve.prover`.

The verdict is `proven` — **by replay** when a replay item proves it, else **by test** — when an item
proves it and none says otherwise; `disproven` when an item shows the change does not fix it (the replay
still fails, the test fails on the branch); `unproven` when nothing could tell. `deploy.require_proof`
says which a plain "ship it" needs (`Proof.meets`). What an agent can act on — a test passing without the
fix, a test that does not run the change, a replay still failing — is `Proof.feedback()`, fed back like
failed checks. The proof is stored with the run (`proofs`) and rendered into the proposal and its report,
each item saying what was observed and by whom.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bot.db import proofs as queries
from bot.db.core import Connection

__all__ = [
    "Basis",
    "ItemVerdict",
    "LiveReplay",
    "Proof",
    "ProofItem",
    "Side",
    "Verdict",
    "load_proof",
    "proved_by_replay",
]

Verdict = Literal["proven", "unproven", "disproven"]
ItemVerdict = Literal["proves", "fails", "no_proof", "neutral"]
Basis = Literal["replay", "test"]
Requirement = Literal["off", "test", "replay"]

_MARK = {True: "✅", False: "❌", None: "—"}
_BY = {"replay": "observed over the wire by the replay", "test": "run by the proof's test runner"}


@dataclass(frozen=True)
class Side:
    """One item's outcome on one checkout: passed or not (None: not run), a short text, its duration."""

    ok: bool | None
    text: str
    duration_s: float | None = None

    def cell(self) -> str:
        took = "" if self.duration_s is None else f" {_seconds(self.duration_s)}"
        return f"{_MARK[self.ok]} {self.text}{took}".strip()


@dataclass(frozen=True)
class ProofItem:
    kind: Literal["test", "replay"]
    label: str
    base: Side | None
    branch: Side | None
    verdict: ItemVerdict
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ProofItem:
        sides = {name: Side(**value[name]) if value.get(name) else None for name in ("base", "branch")}
        return cls(
            value["kind"], value["label"], sides["base"], sides["branch"], value["verdict"], value["note"]
        )


def proved_by_replay(items: list[dict[str, Any]] | list[ProofItem]) -> bool:
    """Whether a replay item proves the fix (stored items are dicts)."""
    for item in items:
        kind, verdict = (
            (item.kind, item.verdict) if isinstance(item, ProofItem) else (item["kind"], item["verdict"])
        )
        if kind == "replay" and verdict == "proves":
            return True
    return False


@dataclass(frozen=True)
class Proof:
    verdict: Verdict
    reason: str
    items: list[ProofItem] = field(default_factory=list)
    overhead_s: float = 0.0
    stage: Literal["verify", "deploy"] = "verify"

    @property
    def proven(self) -> bool:
        return self.verdict == "proven"

    @property
    def basis(self) -> Basis | None:
        """What proved it: a replay judged from outside ranks above a test run in the process under test."""
        if not self.proven:
            return None
        return "replay" if proved_by_replay(self.items) else "test"

    def meets(self, requirement: Requirement) -> bool:
        """Whether this proof is what `deploy.require_proof` asks of a plain "ship it"."""
        if requirement == "off":
            return True
        return self.proven and (requirement == "test" or self.basis == "replay")

    def feedback(self) -> str | None:
        """What the agent must change for the proof to hold, or None when there is nothing to act on."""
        lines = [
            f"- {item.kind} `{item.label}`: {item.note}"
            for item in self.items
            if item.verdict in ("fails", "no_proof")
        ]
        if not lines:
            return None
        return (
            "The proof of your fix does not hold. A fix must come with a test that FAILS on the base commit "
            "(with only your test files added), PASSES with your change and RUNS the lines you changed "
            "(it may not read their source), and the recorded failing calls must be answered on your "
            "branch:\n" + "\n".join(lines)
        )

    def headline(self) -> str:
        if self.verdict == "proven":
            return f"✅ **proven by {self.basis}** — {self.reason}"
        if self.verdict == "disproven":
            return f"❌ **unproven** (disproved) — {self.reason}"
        return f"⚠️ **unproven** — {self.reason}"

    def table(self) -> str:
        """The proof as a markdown table (the PR body and the README)."""
        first, second = ("base", "branch") if self.stage == "verify" else ("recorded", "live")
        rows = [f"| proof | {first} | {second} | |", "|---|---|---|---|"]
        for item in self.items:
            base = item.base.cell() if item.base else "—"
            branch = item.branch.cell() if item.branch else "—"
            rows.append(f"| {item.kind} `{item.label}` | {base} | {branch} | {item.note} |")
        rows.append("")
        rows.append("Replays are " + _BY["replay"] + "; tests are " + _BY["test"] + ".")
        return "\n".join(rows)

    def chat(self) -> str:
        """The proof for a chat message: a headline and one line per item (Discord renders no tables)."""
        lines = [f"🧪 Proof: {self.headline()}"]
        for item in self.items[:8]:
            base = item.base.cell() if item.base else "—"
            branch = item.branch.cell() if item.branch else "—"
            note = f" — {item.note}" if item.note and item.verdict != "proves" else ""
            lines.append(f"• {item.kind} `{item.label}`: base {base} · branch {branch}{note}")
        return "\n".join(lines)


def _seconds(value: float) -> str:
    return f"({value * 1000:.0f} ms)" if value < 1 else f"({value:.1f} s)"


async def load_proof(db: Connection, run_id: int, stage: queries.ProofStage = "verify") -> Proof | None:
    """The newest stored proof of `stage` for a run (what /run, the proposal and the approval gate read)."""
    row = await queries.latest(db, run_id, stage)
    if row is None:
        return None
    items = [ProofItem.from_dict(item) for item in row.items]
    verdict: Verdict = row.verdict  # type: ignore[assignment]  # the table's CHECK allows only these
    return Proof(verdict, row.reason, items, row.overhead_s, row.stage)


@dataclass(frozen=True)
class LiveReplay:
    """What the replay against deployed code says, for the deploy: one line for its report, and
    whether it shows the fix not holding live (then the deploy regresses at once, never "resolved")."""

    line: str = ""
    failed: bool = False
