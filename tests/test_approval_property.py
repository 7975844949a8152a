"""A property of the ship-it gate under random interleavings (seeded, a fixed number of cases).

Approvals (words and ✅, from approvers and from someone who is not one), withdrawals (deleted
messages, removed reactions, edits — seen as they happen, or done while the bot was not listening and
found only by reading Discord again), hand commits on the proposal branch, commits on main, restarts
and cancels are applied in random order to the real services — SQLite, git, the sandboxed verify, the
LocalForge — with `deploy.required_approvals: 2`. Discord is the network edge: a `DiscordRecord`
holds what the users left there. After every step, with the services idle:

1. a run that got merged had, by the test's own book-keeping, at least two distinct approvers whose
   signal for the approved commit was given after the branch last moved and not taken back since;
2. no run is left in `merging`, `verifying` or `editing`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from mendbot.deploy.merge import Merger
from mendbot.improve.runs import Run
from mendbot.kernel.settings import Settings
from mendbot.runtime.services import Services, build_services
from tests.harness.approval_sources import DiscordRecord
from tests.harness.discord import make_settings
from tests.harness.repo import git

DEV = 100
APPROVERS = (1, 2, 3)
OUTSIDER = 66
REQUESTER = 9
CASES = 24
STEPS = 16
CHECK = "python check.py"  # fails when roll.txt says BROKEN: a hand commit may break the change


def _repo(root: Path) -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "roll.txt").write_text("".join(f"line {n}\n" for n in range(1, 11)))
    (root / "check.py").write_text("import sys\nsys.exit('BROKEN' in open('roll.txt').read())\n")
    (root / "notes.txt").write_text("notes\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


async def _services(settings: Settings, discord: DiscordRecord) -> Services:
    services = await build_services(settings, watch_prompts=False)
    services.deploy.sources = discord
    # The same Merger the bot builds, without the smoke load of bot extensions: this repository
    # has none, its one check is check.py.
    old = services.deploy.merger
    services.deploy.merger = Merger(old.repo_root, old.workspace, [CHECK], 60, old.sandbox, smoke=False)
    return services


@dataclass
class Book:
    """What the test did, kept independently of the services: the signals that stand."""

    standing: dict[tuple[str, int, int], str] = field(default_factory=dict)  # (kind, id, user) → sha
    messages: dict[int, int] = field(default_factory=dict)  # approving message id → user

    def approvers_of(self, sha: str) -> set[int]:
        return {user for (_, _, user), given in self.standing.items() if given == sha}


@dataclass
class Case:
    rng: random.Random
    repo: Path
    settings: Settings
    services: Services
    discord: DiscordRecord
    book: Book = field(default_factory=Book)
    run: Run | None = None
    proposal_message: int = 0
    next_id: int = 1000
    branches: int = 0
    merged: list[int] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    approved_head: str = ""  # the branch head when the last approval was given

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    async def ensure_proposal(self) -> Run:
        """The run awaiting approval, or a new run and proposal on a fresh branch from main."""
        runs = self.services.improve.runs
        if self.run is not None:
            self.run = await runs.get(self.run.id)
            if self.run.state == "awaiting_approval":
                return self.run
        self.branches += 1
        branch = f"mendbot/{self.branches}-fix"
        base = git(self.repo, "rev-parse", "main")
        git(self.repo, "switch", "-q", "-c", branch)
        roll = self.repo / "roll.txt"
        roll.write_text(f"fix {self.branches}\n" + roll.read_text())
        git(self.repo, "commit", "-q", "-am", f"fix {self.branches}")
        head = git(self.repo, "rev-parse", "HEAD")
        git(self.repo, "switch", "-q", "main")
        run = await runs.create("fix", REQUESTER, DEV, None, f"fix number {self.branches}")
        for state in ("observing", "investigating", "planning"):
            await runs.transition(run.id, state, actor="pipeline")
        await runs.transition(run.id, "editing", actor="pipeline", branch=branch, base_sha=base)
        await runs.transition(run.id, "verifying", actor="pipeline")
        await runs.transition(run.id, "proposing", actor="pipeline", verified_sha=head, head_sha=head)
        proposal = await self.services.deploy.forge.open_proposal(
            run_id=run.id, branch=branch, head_sha=head, title="t", body="b"
        )
        self.run = await runs.transition(
            run.id, "awaiting_approval", actor="pipeline", proposal_id=proposal.id
        )
        self.proposal_message = self.new_id()
        await self.services.deploy.approvals.register_message(proposal.id, DEV, self.proposal_message)
        self.book = Book()
        return self.run

    def branch_head(self) -> str:
        assert self.run is not None and self.run.branch is not None
        return git(self.repo, "rev-parse", self.run.branch)

    async def decide(self, user: int, *, via: str, message_id: int, emoji: str | None = None) -> None:
        run = await self.ensure_proposal()
        assert run.proposal_id is not None
        head = self.approved_head = self.branch_head()
        await self.services.deploy.decide(
            proposal_id=run.proposal_id,
            user_id=user,
            user_name=f"user{user}",
            role_ids=[],
            is_bot=False,
            channel_id=DEV,
            parent_channel_id=None,
            form="approve",
            via=via,
            message_id=message_id,
            emoji=emoji,
        )
        if user in APPROVERS:
            key = ("message", message_id, user) if via == "words" else ("reaction", message_id, user)
            self.book.standing[key] = head

    # -- the steps -----------------------------------------------------------------------------------

    async def approve_in_words(self) -> None:
        user = self.rng.choice((*APPROVERS, OUTSIDER))
        message = self.new_id()
        self.book.messages[message] = user
        self.discord.say(message, "ship it")
        await self.decide(user, via="words", message_id=message)
        self.log.append(f"words {user} m{message}")

    async def approve_by_reaction(self) -> None:
        user = self.rng.choice((*APPROVERS, OUTSIDER))
        await self.ensure_proposal()
        self.discord.react(self.proposal_message, "✅", user)
        await self.decide(user, via="reaction", message_id=self.proposal_message, emoji="✅")
        self.log.append(f"react {user}")

    async def delete_message(self) -> None:
        if not self.book.messages:
            return
        message = self.rng.choice(sorted(self.book.messages))
        self.discord.delete(message)
        seen = self.rng.random() < 0.5
        if seen:  # else the bot was not listening: only reading Discord again finds it
            await self.services.deploy.withdraw(message_id=message, why="deleted")
        self.book.standing = {k: v for k, v in self.book.standing.items() if k[:2] != ("message", message)}
        self.log.append(f"delete m{message}" + ("" if seen else " unseen"))

    async def edit_message(self) -> None:
        if not self.book.messages:
            return
        message = self.rng.choice(sorted(self.book.messages))
        if message not in self.discord.messages:
            return  # deleted already
        text = self.rng.choice(("Ship it!", "don't ship it", "ship it?", "ship it later"))
        self.discord.say(message, text)
        seen = self.rng.random() < 0.5
        if seen:
            await self.services.deploy.message_edited(message, text)
        if text != "Ship it!":
            self.book.standing = {
                k: v for k, v in self.book.standing.items() if k[:2] != ("message", message)
            }
        self.log.append(f"edit m{message} {text!r}" + ("" if seen else " unseen"))

    async def remove_reaction(self) -> None:
        user = self.rng.choice(APPROVERS)
        self.discord.unreact(self.proposal_message, "✅", user)
        seen = self.rng.random() < 0.5
        if seen:
            await self.services.deploy.withdraw(
                message_id=self.proposal_message, user_id=user, emoji="✅", why="reaction_removed"
            )
        self.book.standing.pop(("reaction", self.proposal_message, user), None)
        self.log.append(f"unreact {user}" + ("" if seen else " unseen"))

    async def hand_commit(self) -> None:
        run = await self.ensure_proposal()
        assert run.branch is not None
        broken = self.rng.random() < 0.3
        git(self.repo, "switch", "-q", run.branch)
        with (self.repo / "roll.txt").open("a") as roll:
            roll.write("BROKEN\n" if broken else f"tweak {self.new_id()}\n")
        git(self.repo, "commit", "-q", "-am", "by hand")
        git(self.repo, "switch", "-q", "main")
        self.book.standing = {}  # nothing given before the move is for what is there now
        self.log.append(f"hand commit (broken={broken})")

    async def commit_on_main(self) -> None:
        with (self.repo / "notes.txt").open("a") as notes:
            notes.write(f"note {self.new_id()}\n")
        git(self.repo, "commit", "-q", "-am", "a note on main")
        self.log.append("main moved")

    async def restart(self) -> None:
        await self.services.quiesce()
        await self.services.aclose()
        self.services = await _services(self.settings, self.discord)
        await self.services.deploy.reread_standing()  # what the Ship cog has it do at start-up
        self.log.append("restart")

    async def cancel(self) -> None:
        run = await self.ensure_proposal()
        await self.services.improve.cancel(run.id, APPROVERS[0])
        self.log.append("cancel")

    STEPS = (
        (approve_in_words, 5),
        (approve_by_reaction, 4),
        (delete_message, 3),
        (edit_message, 3),
        (remove_reaction, 3),
        (hand_commit, 2),
        (commit_on_main, 2),
        (restart, 1),
        (cancel, 1),
    )

    async def step(self) -> None:
        actions, weights = zip(*self.STEPS, strict=True)
        action = self.rng.choices(actions, weights)[0]
        await action(self)
        await self.services.quiesce()
        await self.check()

    async def check(self) -> None:
        runs = await self.services.improve.runs.list_recent(100)
        stuck = [(r.id, r.state) for r in runs if r.state in ("merging", "verifying", "editing")]
        assert not stuck, f"left in a transitional state: {stuck}\n" + "\n".join(self.log)
        for run in runs:
            if run.state in ("deployed", "watching") and run.id not in self.merged:
                # Merged in this step (a merge only follows an approval): who stands behind the head
                # that was approved, by the book?
                self.merged.append(run.id)
                approvers = self.book.approvers_of(self.approved_head)
                assert len(approvers) >= 2, f"run {run.id} merged with approvers {approvers}\n" + "\n".join(
                    self.log
                )
                self.log.append(f"merged run {run.id}")


async def test_random_interleavings_never_merge_without_current_approvals(tmp_path: Path) -> None:
    """Seeded random sequences of approvals, withdrawals, branch moves, restarts and cancels keep the
    gate's promise: no merge without two current approvals, and no run left mid-way once idle."""
    merges = 0
    for seed in range(CASES):
        root = tmp_path / f"case-{seed}"
        root.mkdir()
        repo = _repo(root / "repo")
        settings = make_settings(
            root / "data",
            repo_dir=repo,
            discord={"dev_channel_ids": [DEV]},
            access={"allowed_user_ids": list(APPROVERS)},
            deploy={"watch_hand_edits": False, "required_approvals": 2},
            improve={"checks": [CHECK]},
        )
        discord = DiscordRecord()
        case = Case(random.Random(seed), repo, settings, await _services(settings, discord), discord)
        try:
            for _ in range(STEPS):
                await case.step()
        finally:
            await case.services.aclose()
        merges += len(case.merged)
    assert merges > 0  # the sequences did reach merges: the property was not checked on nothing
