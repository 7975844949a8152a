"""A proof of fix as the pipeline, the approval gate and the reports see it: its items — each an outcome on
the base and one on the branch (recorded and live, after a deploy) with what was observed — its verdict,
how it reads in a proposal and in chat, and how it is loaded from the `proofs` table. How a proof is taken
is `mendbot.improve.proof.prover`, how its replayed calls are judged `mendbot.improve.proof.judge`.

Each item has a role: a recorded failing call the agent was shown (`recorded`) or not (`held-out`), a
`neighbour` (the same command with a nearby value), a call that worked before (`pass`), or a regression
test. Its verdict: `proves` (fails on the base, fixed on the branch), `holds` (worked on the base, works
alike on the branch), `fails` (still fails, or broke), `slow` (answers, far slower than before),
`refused` (no longer fails, but is refused: the recorded error turned into a user error, or nearby inputs
get results),
`no_proof` (a test that proves nothing) or `neutral` (could not tell). An item may carry `flags`: what a
reviewer should look at (the same answer for every failing input where nearby inputs get their own) —
shown with the proof, never a verdict: fixing a failure often means one answer for all of it.

The verdict is `proven` when a replay item — judged from outside the code under test — proves it and
none says otherwise; `tested` when only the change's own regression test shows the fix (evidence its
author wrote adds to a proof or disproves it, never proves alone: what cannot be replayed is at most
tested); `disproven` when an item shows the change does not fix it or breaks what worked; `unproven`
when nothing could tell, or when it answers but far slower than before, with a refusal, or by changing
the bot's stored data.
`deploy.require_proof` says which a plain "ship it" needs (`Proof.meets`). What an agent can act on is
`Proof.feedback()`, fed back like failed checks — without the inputs of calls it was not shown. The proof
is stored with the run (`proofs`) and rendered into the proposal and its report, each item saying what
was observed and by whom.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from mendbot.db import proofs as queries
from mendbot.db.core import Connection

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

Verdict = Literal["proven", "tested", "unproven", "disproven"]
ItemVerdict = Literal["proves", "holds", "fails", "slow", "refused", "changes_data", "no_proof", "neutral"]
Basis = Literal["replay", "test"]
Requirement = Literal["off", "test", "replay"]

_MARK = {True: "✅", False: "❌", None: "—"}
_ROLES = {
    "recorded": "",
    "held-out": "held out",
    "neighbour": "neighbour",
    "pass": "worked before",
    "data": "data change",
    "stored": "",  # what the proof could read of the bot's stored data
}
_HIDDEN = ("held-out", "neighbour")  # calls the agent was not shown: fed back without their inputs
_BY = {"replay": "observed over the wire by the replay", "test": "run by the proof's test runner"}


class Side(msgspec.Struct, frozen=True):
    """One item's outcome on one checkout: passed or not (None: not run), a short text, its duration."""

    ok: bool | None
    text: str
    duration_s: float | None = None

    def cell(self) -> str:
        took = "" if self.duration_s is None else f" {_seconds(self.duration_s)}"
        return f"{_MARK[self.ok]} {self.text}{took}".strip()


class ProofItem(msgspec.Struct, frozen=True):
    kind: Literal["test", "replay"]
    label: str
    base: Side | None
    branch: Side | None
    verdict: ItemVerdict
    note: str = ""
    role: str = ""  # "recorded", "held-out", "neighbour", "pass" for a replay; "" for a test
    flags: tuple[str, ...] = ()  # what a reviewer should look at (shown, not a verdict)

    def to_dict(self) -> dict[str, Any]:
        items: dict[str, Any] = msgspec.to_builtins(self)  # the flags a list, each side a dict
        return items

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ProofItem:
        sides = {name: Side(**value[name]) if value.get(name) else None for name in ("base", "branch")}
        return cls(
            value["kind"],
            value["label"],
            sides["base"],
            sides["branch"],
            value["verdict"],
            value["note"],
            value.get("role", ""),
            tuple(value.get("flags") or ()),
        )

    def redacted(self, redact: Callable[[str], str]) -> ProofItem:
        """The item with every text it carries through the redactor (what is stored and shown)."""
        sides = [
            None if side is None else msgspec.structs.replace(side, text=redact(side.text))
            for side in (self.base, self.branch)
        ]
        return msgspec.structs.replace(
            self,
            label=redact(self.label),
            base=sides[0],
            branch=sides[1],
            note=redact(self.note),
            flags=tuple(redact(flag) for flag in self.flags),
        )

    @property
    def title(self) -> str:
        """`replay `!roll 5d6` (held out)`: what it is, and its role where that says more."""
        role = _ROLES.get(self.role, self.role)
        return f"{self.kind} `{self.label}`" + (f" ({role})" if role else "")

    @property
    def cautious(self) -> bool:
        """The failure is gone, but the answer is far slower than before, a refusal, or the bot's stored
        data changed to make it go: the proof can be no more than unproven."""
        return self.verdict in ("slow", "refused", "changes_data")

    def told(self) -> str:
        """What this item says in feedback to the agent: a call it was not shown, without its input."""
        notes = "; ".join([self.note, *self.flags] if self.note else self.flags)
        if self.role in _HIDDEN:
            what = "a call you were not shown" if self.role == "held-out" else "a nearby call"
            return f"- {self.kind} ({what}, `{self.label.split(' ', 1)[0]}`): {notes}"
        return f"- {self.kind} `{self.label}`: {notes}"


def proved_by_replay(items: list[dict[str, Any]] | list[ProofItem]) -> bool:
    """Whether a replay item proves the fix (stored items are dicts)."""
    for item in items:
        kind, verdict = (
            (item.kind, item.verdict) if isinstance(item, ProofItem) else (item["kind"], item["verdict"])
        )
        if kind == "replay" and verdict == "proves":
            return True
    return False


class Proof(msgspec.Struct, frozen=True):
    verdict: Verdict
    reason: str
    items: list[ProofItem] = msgspec.field(default_factory=list)
    overhead_s: float = 0.0
    stage: Literal["verify", "deploy"] = "verify"

    @property
    def proven(self) -> bool:
        return self.verdict == "proven"

    @property
    def tested(self) -> bool:
        """Shown by the change's own regression test alone: less than proven (nothing replayed it)."""
        return self.verdict == "tested"

    @property
    def basis(self) -> Basis | None:
        """What showed the fix: a replay judged from outside (proven), or the change's own test (tested)."""
        if self.proven:
            return "replay"
        return "test" if self.tested else None

    def meets(self, requirement: Requirement) -> bool:
        """Whether this proof is what `deploy.require_proof` asks of a plain "ship it": `test` takes a
        proven or a tested fix, `replay` only a proven one."""
        if requirement == "off":
            return True
        return self.proven or (requirement == "test" and self.tested)

    def feedback(self) -> str | None:
        """What the agent must change for the proof to hold, or None when there is nothing to act on."""
        lines = list(
            dict.fromkeys(
                item.told() for item in self.items if item.verdict in ("fails", "no_proof") or item.cautious
            )
        )
        if not lines:
            return None
        return (
            "The proof of your fix does not hold. A fix must come with a test that FAILS on the base commit "
            "with the reported error (with only your test files added; it may not replace the code it "
            "tests), PASSES with your change and RUNS the lines you changed (it may not read their "
            "source). The recorded failing calls — also calls you were not shown, and the same commands "
            "with nearby values — must be answered on your branch without the error happening (catching "
            "it is not fixing it), calls that worked must answer as before, and no slower:\n"
            + "\n".join(lines[:20])
        )

    def headline(self) -> str:
        flags = sum(len(item.flags) for item in self.items)
        read = f" (⚠️ {flags} flag{'s' if flags > 1 else ''} to read)" if flags else ""
        if self.verdict == "proven":
            return f"✅ **proven by replay** — {self.reason}{read}"
        if self.verdict == "tested":
            return f"🧪 **tested** (not proven) — {self.reason}{read}"
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
            notes = "; ".join([item.note, *(f"⚠️ {flag}" for flag in item.flags)] if item.note else item.flags)
            rows.append(f"| {item.title} | {base} | {branch} | {notes} |")
        rows.append("")
        rows.append("Replays are " + _BY["replay"] + "; tests are " + _BY["test"] + ".")
        return "\n".join(rows)

    def chat(self) -> str:
        """The proof for a chat message (Discord renders no tables): a headline, what was checked by role,
        then the items that did not pass first, one line each."""
        lines = [f"🧪 Proof: {self.headline()}"]
        counts = self.checked()
        if counts:
            lines.append("Checked: " + " · ".join(counts))
        trouble = [i for i in self.items if i.verdict in ("fails", "no_proof") or i.cautious or i.flags]
        rest = [i for i in self.items if i not in trouble and i.verdict != "holds" and i.role != "neighbour"]
        for item in (trouble + rest)[:8]:
            base = item.base.cell() if item.base else "—"
            branch = item.branch.cell() if item.branch else "—"
            notes = [item.note] if item.note and item.verdict != "proves" else []
            notes += [f"⚠️ {flag}" for flag in item.flags]
            note = f" — {'; '.join(notes)}" if notes else ""
            lines.append(f"• {item.title}: base {base} · branch {branch}{note}")
        return "\n".join(lines)

    def checked(self) -> list[str]:
        """What the replay checked, by role: "held out 2/2 fixed", "worked before 5/5 unchanged"…"""
        shown = []
        for role, good, name, word in (
            ("recorded", "proves", "recorded", "fixed"),
            ("held-out", "proves", "held out", "fixed"),
            ("neighbour", "proves", "neighbours", "fixed"),
            ("pass", "holds", "worked before", "unchanged"),
        ):
            items = [
                i for i in self.items if i.kind == "replay" and i.role == role and i.verdict != "neutral"
            ]
            if items:
                ok = sum(1 for i in items if i.verdict == good and not i.cautious)
                shown.append(f"{name} {ok}/{len(items)} {word}")
        return shown


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


class LiveReplay(msgspec.Struct, frozen=True):
    """What the replay against deployed code says, for the deploy: one line for its report, and
    whether it shows the fix not holding live (then the deploy regresses at once, never "resolved")."""

    line: str = ""
    failed: bool = False
