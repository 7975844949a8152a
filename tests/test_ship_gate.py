"""The ship-it gate through the virtual Discord: the approval grammar, approvals that follow the human
(edits, deletions, removed reactions — also after a restart), roles re-checked at merge time, a
conflicting main, and the /rollback channel rule.

A proposal is put in place with the real services (a run driven to awaiting approval, a branch in a
real git repository opened on the LocalForge, its message posted by the Improve cog), so everything
from the user's message on — simcord, discord.py, the cogs, the approval and deploy services, SQLite
and git — is the real thing, without running the coding agent for each case.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import pytest

from mendbot.db import approvals as approval_queries
from mendbot.db import objections as objection_queries
from mendbot.db.proposals import Proposal
from mendbot.improve.runs import Run
from mendbot.tools.playground import VirtualWorld
from tests.harness.discord import bot_down, bot_messages, make_bot, make_settings, reply_text, running_world
from tests.harness.repo import git
from tests.harness.sql import stored


def tiny_repo(path: Path) -> Path:
    """A live checkout with one file on main (no cogs: a merge of it reloads nothing)."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "notes.txt").write_text("one\ntwo\nthree\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


@dataclass
class Gate:
    world: VirtualWorld
    repo: Path

    @property
    def services(self) -> Any:
        return self.world.bot.services

    def branch(self, name: str, text: str = "one\ntwo\nthree\nfour\n") -> tuple[str, str]:
        """A proposal branch off main changing notes.txt; (base, head)."""
        base = git(self.repo, "rev-parse", "main")
        git(self.repo, "switch", "-q", "-c", name)
        (self.repo / "notes.txt").write_text(text)
        git(self.repo, "commit", "-q", "-am", f"change on {name}")
        head = git(self.repo, "rev-parse", "HEAD")
        git(self.repo, "switch", "-q", "main")
        return base, head

    async def propose(
        self, branch: str = "mendbot/1-fix", *, reuse: bool = False
    ) -> tuple[Run, Proposal, Any]:
        """A run awaiting approval of `branch`, and its proposal message in #dev."""
        if reuse:
            base, head = git(self.repo, "merge-base", "main", branch), git(self.repo, "rev-parse", branch)
        else:
            base, head = self.branch(branch)
        runs = self.services.improve.runs
        requester = self.world.users["mallory"].id  # not an approver: exclude_requester stays moot
        run = await runs.create("fix", requester, self.world.dev.id, None, "fix the notes")
        for state in ("observing", "investigating", "planning"):
            await runs.transition(run.id, state, actor="pipeline")
        await runs.transition(run.id, "editing", actor="pipeline", branch=branch, base_sha=base)
        await runs.transition(run.id, "verifying", actor="pipeline")
        await runs.transition(run.id, "proposing", actor="pipeline", verified_sha=head, head_sha=head)
        proposal = await self.services.deploy.forge.open_proposal(
            run_id=run.id, branch=branch, head_sha=head, title="notes", body="b"
        )
        run = await runs.transition(run.id, "awaiting_approval", actor="pipeline", proposal_id=proposal.id)
        await self.services.improve.reporter.report(run, f"🛠 Run #{run.id} — fix ready for review")
        await self.world.quiesce()
        message = bot_messages(self.world, self.world.dev)[-1]
        assert f"Run #{run.id}" in message.content
        return run, proposal, message

    def replies_to(self, message: discord.Message) -> list[str]:
        return [
            m.content
            for m in bot_messages(self.world, self.world.dev)
            if m.reference is not None and m.reference.message_id == message.id
        ]

    def last(self) -> str:
        return bot_messages(self.world, self.world.dev)[-1].content

    async def state(self, run: Run) -> str:
        return str((await self.services.improve.runs.get(run.id)).state)

    async def standing(self, proposal: Proposal) -> list[tuple[int, str]]:
        rows = await approval_queries.for_proposal(self.services.db, proposal.id)
        return [(row.user_id, row.form) for row in rows if row.counts]

    async def events(self, run: Run, name: str) -> list[dict[str, Any]]:
        return [e.detail for e in await self.services.improve.runs.events(run.id) if e.event == name]

    def add_approver(self, name: str) -> Any:
        member = self.world.guild.add_member(self.world.env.create_user(name))
        self.services.settings.access.allowed_user_ids.append(member.id)
        return member

    async def restart(self) -> None:
        """A new bot process on the same database and repository."""
        settings = self.services.settings
        await self.world.restart(await make_bot(settings))


@pytest.fixture
async def gate(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Gate]:
    marker = request.node.get_closest_marker("deploy")
    deploy = {"watch_hand_edits": False, "required_approvals": 2, **(marker.kwargs if marker else {})}
    repo = tiny_repo(tmp_path / "repo")
    settings = make_settings(tmp_path / "data", repo_dir=repo, deploy=deploy)
    async with running_world(settings) as world:
        yield Gate(world, repo)


# -- the grammar, message by message ---------------------------------------------------------------

CYR_O, CYR_I, CYR_A, GREEK_I = "\u043e", "\u0456", "\u0430", "\u03b9"
ZWSP, ZWJ, WJ, SHY = "\u200b", "\u200d", "\u2060", "\u00ad"

GRAMMAR: list[tuple[str, str]] = [
    # clear approvals
    ("ship it", "approve"),
    ("Ship it!", "approve"),
    ("SHIP IT.", "approve"),
    ("  ship   it  ", "approve"),
    ("ship", "approve"),
    ("lgtm, merge", "approve"),
    ("merge it", "approve"),
    ("approve", "approve"),
    ("ｓｈｉｐ ｉｔ", "approve"),  # full-width letters: NFKC
    (f"sh{CYR_I}p {CYR_I}t", "approve"),  # Cyrillic і in the approval: folded, still a yes
    (f"ship {GREEK_I}t", "approve"),  # a Greek iota: mixed scripts
    (f"ship{ZWSP} it", "approve"),  # a zero-width space next to a real one
    (f"sh{SHY}ip it", "approve"),  # a soft hyphen inside the word
    (f"s{ZWJ}hip i{WJ}t", "approve"),  # joiners inside words
    ("✅", "approve"),
    ("✔️", "approve"),
    ("☑️", "approve"),
    ("✅\ufe0f", "approve"),  # with a variation selector
    ("ship it security", "approve_security"),
    ("Ship it SECURITY!", "approve_security"),
    ("🔐", "approve_security"),
    # clear rejections
    ("don't ship", "reject"),
    ("don’t ship it", "reject"),  # a curly apostrophe
    (f"d{CYR_O}n't ship it", "reject"),  # the Cyrillic о that once shipped
    ("do not ship", "reject"),
    ("reject", "reject"),
    ("❌", "reject"),
    # objections: a negation of shipping, a word asking to wait or stop, a message opening with no —
    # each holds the merge until its author approves or takes it back
    ("I wouldn't ship it", "object"),
    (f"I w{CYR_O}uldn't ship it", "object"),  # look-alike letter in the negation
    ("never ship it", "object"),
    ("not yet, ship it later", "object"),
    ("hold on, ship it", "object"),
    ("wait, ship it", "object"),
    ("no ship it", "object"),
    ("ship it, not", "object"),
    (f"n{CYR_O}t yet ship it", "object"),
    ("wait, don't ship it", "object"),
    ("don't merge it yet", "object"),
    ("do not merge", "object"),
    ("we shouldn't deploy this on a Friday", "object"),
    ("ship it later", "object"),
    ("wait", "object"),
    (f"w{CYR_A}it", "object"),  # a look-alike letter in the word asking to wait
    (f"wa{ZWSP}it", "object"),  # a zero-width space inside it
    ("hold on", "object"),
    ("please hold off", "object"),
    ("let's pause this", "object"),
    ("stop", "object"),
    ("this blocks the release", "object"),
    ("waiting for CI", "object"),
    ("no", "object"),
    ("Nope.", "object"),
    ("not yet", "object"),
    ("✅ but wait for CI", "object"),
    ("should we wait?", "object"),  # asking whether to wait is asking to wait
    # a negation the grammar cannot place: it holds too, and asks
    ("I don't get this diff", "unclear"),
    # questions, quotes, code
    ("ship it?", "unclear"),
    ("should we ship it?", "unclear"),
    ("ship it？", "unclear"),  # a full-width question mark
    ("> ship it", "unclear"),
    ('"ship it"', "unclear"),
    ("“ship it”", "unclear"),
    ("'ship it'", "unclear"),
    ("«ship it»", "unclear"),
    ("`ship it`", "unclear"),
    ("```\nship it\n```", "unclear"),
    ("he said > ship it\n> ship it", "unclear"),
    # ship-it-like but not the whole message
    ("ship it 🚀", "unclear"),
    ("ship it please", "unclear"),
    ("lgtm", "unclear"),
    (f"ship{ZWSP}it", "unclear"),  # a zero-width space as the only gap: "shipit"
    ("deploy", "unclear"),
    # not about shipping at all: no answer
    ("thanks!", "none"),
    ("looks fine to me", "none"),
    ("what does this change?", "none"),
]


def test_grammar_table_is_big_enough() -> None:
    """The table covers at least 40 messages and every verdict."""
    assert len(GRAMMAR) >= 40
    verdicts = {verdict for _, verdict in GRAMMAR}
    assert verdicts == {"approve", "approve_security", "reject", "object", "unclear", "none"}


async def _verdict(gate: Gate, run: Run, proposal: Proposal, reply: list[str]) -> str:
    if await gate.state(run) == "rejected":
        return "reject"
    standing = await gate.standing(proposal)
    if standing:
        return standing[0][1]
    held = await objection_queries.standing(gate.services.db, proposal.id)
    if held:
        return held[0].kind
    if await gate.events(run, "approval_unclear"):
        return "unclear without holding"
    # Not about shipping: the approval flow stays out of it (the chat cog may still answer, as it
    # answers every message addressed to the bot).
    from_gate = [text for text in reply if "count as an approval" in text or "Approval of" in text]
    return "none" if not from_gate else f"answered but recorded nothing: {from_gate}"


@pytest.mark.deploy(required_approvals=2)
async def test_every_message_of_the_grammar_table_gets_its_verdict(gate: Gate) -> None:
    """Each message, replied to a proposal in #dev by an approver, counts exactly as the table says."""
    git(gate.repo, "branch", "mendbot/shared", gate.branch("mendbot/base")[1])
    wrong: list[str] = []
    for text, expected in GRAMMAR:
        run, proposal, message = await gate.propose("mendbot/shared", reuse=True)
        sent = await gate.world.users["alice"].send(gate.world.dev, text, reply_to=message)
        await gate.world.quiesce()
        replies = gate.replies_to(sent)
        verdict = await _verdict(gate, run, proposal, replies)
        if verdict != expected:
            wrong.append(f"{text!r}: expected {expected}, got {verdict}")
        elif expected == "unclear":
            if not (len(replies) == 1 and "doesn't count" in replies[0] and "**ship it**" in replies[0]):
                wrong.append(f"{text!r}: unclear without a reply saying what counts: {replies}")
            elif f"holds run #{run.id}" not in replies[0]:
                wrong.append(f"{text!r}: unclear without saying it holds the run: {replies}")
        elif expected == "object":
            if not (len(replies) == 1 and replies[0].startswith(f"⏸ Holding run #{run.id}")):
                wrong.append(f"{text!r}: an objection not answered as holding the run: {replies}")
        elif expected == "none" and any("approval" in r.lower() or "ship" in r.lower() for r in replies):
            # The chat cog may answer (every message addressed to the bot gets an answer); the gate must not.
            wrong.append(f"{text!r}: not about shipping, yet the gate answered: {replies}")
        elif expected.startswith("approve") and not any("approved" in r and "(1/2)" in r for r in replies):
            wrong.append(f"{text!r}: approval not confirmed: {replies}")
    assert not wrong, "\n".join(wrong)


REACTIONS = [("✅", "approve"), ("✔️", "approve"), ("☑️", "approve"), ("🔐", "approve_security"),
             ("❌", "reject"), ("👍", "none"), ("🚀", "none")]  # fmt: skip


@pytest.mark.deploy(required_approvals=2)
async def test_reaction_variants_get_their_verdict(gate: Gate) -> None:
    """✅ ✔️ ☑️ approve, 🔐 is the security form, ❌ rejects; other emoji are not decisions."""
    git(gate.repo, "branch", "mendbot/shared", gate.branch("mendbot/base")[1])
    wrong = []
    for emoji, expected in REACTIONS:
        run, proposal, message = await gate.propose("mendbot/shared", reuse=True)
        await gate.world.users["alice"].react(message, emoji)
        await gate.world.quiesce()
        verdict = await _verdict(gate, run, proposal, [])
        if verdict != expected:
            wrong.append(f"{emoji}: expected {expected}, got {verdict}")
    assert not wrong, "\n".join(wrong)


async def test_unclear_message_is_recorded_with_its_reason(gate: Gate) -> None:
    """ "ship it?" is recorded on the run as approval_unclear (reason question) and stores nothing."""
    run, proposal, message = await gate.propose()
    await gate.world.users["alice"].send(gate.world.dev, "ship it?", reply_to=message)
    await gate.world.quiesce()
    (event,) = await gate.events(run, "approval_unclear")
    assert (event["reason"], event["proposal_id"]) == ("question", proposal.id)
    assert await gate.standing(proposal) == []
    assert await gate.state(run) == "awaiting_approval"


# -- approvals follow the human --------------------------------------------------------------------


async def test_editing_an_approval_into_a_negation_withdraws_it(gate: Gate) -> None:
    """ "ship it" edited into "don't ship it" no longer counts: bob's approval then makes 1/2, no merge."""
    bob = gate.add_approver("bob")
    run, proposal, message = await gate.propose()
    alice = gate.world.users["alice"]
    approving = await alice.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    await alice.edit(approving, "don't ship it")
    await gate.world.quiesce()
    assert "withdrawn: the message was edited" in gate.last()
    assert await gate.standing(proposal) == []
    await bob.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert "(1/2)" in gate.last() and await gate.state(run) == "awaiting_approval"
    (withdrawn,) = await gate.events(run, "approval_withdrawn")
    assert withdrawn["why"] == "edited"


async def test_an_edit_that_is_still_a_clear_yes_keeps_the_approval(gate: Gate) -> None:
    """ "ship it" edited into "Ship it!" still counts: with bob's the proposal merges."""
    bob = gate.add_approver("bob")
    run, proposal, message = await gate.propose()
    alice = gate.world.users["alice"]
    approving = await alice.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    await alice.edit(approving, "Ship it!")
    await gate.world.quiesce()
    assert await gate.standing(proposal) == [(alice.id, "approve")]
    await bob.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    merged = [*gate.replies_to(approving), gate.last()]
    assert await gate.state(run) == "watching", merged
    assert f"<@{alice.id}>" in gate.last() and f"<@{bob.id}>" in gate.last()  # whose approvals counted


async def test_deleting_the_approving_message_withdraws_it_after_a_restart(gate: Gate) -> None:
    """The bot restarts; alice deletes her "ship it" (a raw event, nothing cached): it stops counting."""
    bob = gate.add_approver("bob")
    run, _proposal, message = await gate.propose()
    alice = gate.world.users["alice"]
    approving = await alice.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    await gate.restart()
    await alice.delete(approving)
    await gate.world.quiesce()
    assert "withdrawn: the message was deleted" in gate.last()
    await bob.react(message, "✅")
    await gate.world.quiesce()
    assert "(1/2)" in gate.last() and await gate.state(run) == "awaiting_approval"


async def test_removing_the_reaction_withdraws_it_after_a_restart(gate: Gate) -> None:
    """✅ then a restart then the ✅ removed: the approval is withdrawn and does not count."""
    bob = gate.add_approver("bob")
    run, proposal, message = await gate.propose()
    alice = gate.world.users["alice"]
    await alice.react(message, "✅")
    await gate.world.quiesce()
    assert await gate.standing(proposal) == [(alice.id, "approve")]
    await gate.restart()
    await alice.unreact(message, "✅")
    await gate.world.quiesce()
    assert "withdrawn: the reaction was removed" in gate.last()
    assert await gate.standing(proposal) == []
    await bob.react(message, "✅")
    await gate.world.quiesce()
    assert await gate.state(run) == "awaiting_approval"


async def test_removing_one_signal_keeps_the_other(gate: Gate) -> None:
    """alice approved by a reply and by ✅; removing the ✅ leaves the reply standing."""
    _run, proposal, message = await gate.propose()
    alice = gate.world.users["alice"]
    await alice.send(gate.world.dev, "ship it", reply_to=message)
    await alice.react(message, "✅")
    await gate.world.quiesce()
    await alice.unreact(message, "✅")
    await gate.world.quiesce()
    assert await gate.standing(proposal) == [(alice.id, "approve")]


async def test_role_removed_between_approval_and_merge_does_not_count(gate: Gate) -> None:
    """carol approves through an allow-listed role, loses it, alice approves: 1/2 at merge time, no merge."""
    role = gate.world.guild.create_role("maintainers")
    gate.services.settings.access.allowed_role_ids = [role.id]
    carol = gate.world.guild.add_member(gate.world.env.create_user("carol"), roles=[role])
    run, _proposal, message = await gate.propose()
    await carol.react(message, "✅")
    await gate.world.quiesce()
    assert "(1/2)" in gate.last()
    gate.world.env.backend.remove_member_role(gate.world.guild.id, carol.id, role.id)
    await gate.world.quiesce()
    await gate.world.users["alice"].react(message, "✅")
    await gate.world.quiesce()
    text = gate.last()
    assert "Not merged" in text and f"<@{carol.id}> is no longer allow-listed" in text, text
    assert await gate.state(run) == "awaiting_approval"
    assert git(gate.repo, "rev-parse", "main") == git(gate.repo, "rev-parse", "HEAD")  # nothing merged
    assert (await gate.events(run, "approvals_rechecked"))[-1]["counted"] == [gate.world.users["alice"].id]


async def test_role_kept_until_merge_counts(gate: Gate) -> None:
    """The same with carol keeping her role: both count at merge time and the proposal merges."""
    role = gate.world.guild.create_role("maintainers")
    gate.services.settings.access.allowed_role_ids = [role.id]
    carol = gate.world.guild.add_member(gate.world.env.create_user("carol"), roles=[role])
    run, _, message = await gate.propose()
    await carol.react(message, "✅")
    await gate.world.users["alice"].react(message, "✅")
    await gate.world.quiesce()
    assert await gate.state(run) == "watching"
    assert "four" in (gate.repo / "notes.txt").read_text()


# -- no wedge ---------------------------------------------------------------------------------------


@pytest.mark.deploy(required_approvals=1)
async def test_conflicting_main_goes_back_to_the_human_with_the_files(gate: Gate) -> None:
    """main moved to a conflicting commit: "ship it" is answered with the files and `redo`; the run
    awaits approval again with its proposal open, and never stays merging."""
    run, proposal, message = await gate.propose()
    (gate.repo / "notes.txt").write_text("one\ntwo\nTHREE\n")
    git(gate.repo, "commit", "-q", "-am", "a conflicting change on main")
    sent = await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    (reply,) = gate.replies_to(sent)
    assert "main moved and conflicts in `notes.txt`" in reply and "say `redo`" in reply
    assert "proposal stays open" in reply
    current = await gate.services.improve.runs.get(run.id)
    assert current.state == "awaiting_approval"
    assert (await gate.services.deploy.forge.get(proposal.id)).state == "open"
    again = await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert "main moved and conflicts in `notes.txt`" in gate.replies_to(again)[-1]
    assert (await gate.services.improve.runs.get(run.id)).state == "awaiting_approval"


async def test_rollback_outside_the_dev_channel_is_refused(gate: Gate) -> None:
    """/rollback in #general answers "ask in the dev channel" and starts nothing."""
    result = await gate.world.users["alice"].slash(gate.world.general, "rollback", run_id=1)
    assert result.response is not None and "dev channel" in result.response.content
    assert await gate.services.improve.runs.list_recent(5) == []


async def test_watchdog_fails_a_run_stuck_in_merging_and_reports_it(gate: Gate) -> None:
    """A merge with no progress past stuck_timeout_s becomes a reported failure; a fresh run is left."""
    runs, improve = gate.services.improve.runs, gate.services.improve
    gate.services.settings.improve.stuck_timeout_s = 3600  # the default, which the harness lifts
    stuck, proposal, _ = await gate.propose()
    stuck = await runs.transition(stuck.id, "merging", actor="test: a merge that never returns")
    fresh = await runs.create("fix", gate.world.users["alice"].id, gate.world.dev.id, None, "another thing")
    fresh = await runs.transition(fresh.id, "observing", actor="pipeline")
    assert "run-watchdog" in gate.services.daemons.running()
    assert stuck.updated_at < fresh.updated_at
    # The watchdog's clock, an hour (stuck_timeout_s) after a moment between the two runs' last steps.
    swept = await improve.sweep_stuck(now=(stuck.updated_at + fresh.updated_at) / 2 + 3600)
    await gate.world.quiesce()
    assert [run.id for run in swept] == [stuck.id]
    failed = await runs.get(stuck.id)
    assert (failed.state, failed.failure_stage) == ("failed", "merging")
    assert failed.failure_reason is not None and "watchdog" in failed.failure_reason
    assert await gate.state(fresh) == "observing"
    assert (await gate.services.deploy.forge.get(proposal.id)).state == "closed"
    assert any(
        m.content.startswith(f"⏱ Run #{stuck.id} failed") and "`redo`" in m.content
        for m in bot_messages(gate.world, gate.world.dev)
    )


async def test_watchdog_loop_sweeps_on_its_own(gate: Gate) -> None:
    """The watchdog loop, with a short timeout, fails a run left in editing without being asked."""
    improve = gate.services.improve
    run = await improve.runs.create("fix", gate.world.users["alice"].id, gate.world.dev.id, None, "hangs")
    await improve.runs.transition(run.id, "observing", actor="pipeline")
    gate.services.settings.improve.stuck_timeout_s = 0.2
    loop = asyncio.get_running_loop().create_task(improve.watchdog())

    async def failed() -> None:
        # The loop's only output is the run's row; poll it (bounded by wait_for below).
        while await gate.state(run) != "failed":  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(failed(), 20)
    finally:
        loop.cancel()
    assert "watchdog" in str((await improve.runs.get(run.id)).failure_reason)


# -- the deploy continues where it stopped ------------------------------------------------------------


def _merged_refs(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", "refs/mendbot/merged/").split()


@pytest.mark.deploy(required_approvals=1)
async def test_a_stale_index_lock_holds_the_deploy_and_resume_finishes_it(gate: Gate) -> None:
    """git refuses the fast-forward (a stale index.lock): the run is held with the reason, not merging;
    once the lock is gone `/run 1 action:resume` fast-forwards and reloads without merging again."""
    run, proposal, message = await gate.propose()
    lock = gate.repo / ".git" / "index.lock"
    lock.write_text("")
    sent = await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    (held,) = gate.replies_to(sent)
    assert "the live checkout was not updated" in held and "index.lock" in held
    assert f"`/run {run.id} action:resume`" in held
    current = await gate.services.improve.runs.get(run.id)
    assert (current.state, current.interrupted_from) == ("interrupted", "merging")
    assert "four" not in (gate.repo / "notes.txt").read_text()
    lock.unlink()
    result = await gate.world.users["alice"].slash(gate.world.dev, "run", run_id=run.id, action="resume")
    await gate.world.quiesce()
    assert "Merged" in reply_text(result) and "deployed" in reply_text(result)
    assert await gate.state(run) == "watching"
    assert git(gate.repo, "rev-parse", "HEAD") == proposal.head_sha
    assert _merged_refs(gate.repo) == [f"refs/mendbot/merged/{proposal.id}"]


@pytest.mark.deploy(required_approvals=1)
async def test_a_restart_after_the_merge_was_recorded_finishes_the_deploy(gate: Gate) -> None:
    """The process stops after the merge was recorded, before the fast-forward: at start-up the deploy
    goes on from there — live checkout at the merge, watched, one report saying so, merged once."""
    run, proposal, _ = await gate.propose()
    await gate.services.improve.runs.transition(run.id, "merging", actor="user:1")
    await gate.services.deploy.forge.merge(proposal.id, proposal.head_sha)  # then the process dies
    await gate.restart()
    await gate.world.quiesce()
    assert await gate.state(run) == "watching"
    assert git(gate.repo, "rev-parse", "HEAD") == proposal.head_sha
    texts = [m.content for m in bot_messages(gate.world, gate.world.dev)]
    continued = [t for t in texts if t.startswith(f"▶️ Run #{run.id} was interrupted")]
    assert len(continued) == 1 and "Merged" in continued[0], texts[-3:]
    assert not any("resume` continues it" in t for t in texts)  # not offered as a manual resume
    assert _merged_refs(gate.repo) == [f"refs/mendbot/merged/{proposal.id}"]


async def _decided_then_stopped(gate: Gate, bob: Any) -> tuple[Run, Proposal, Any]:
    """alice's ✅ through Discord, then bob's approval decided (the run is merging) — and the process
    stops before merging: only the approval service ran for bob's ✅ (on Discord, it is there)."""
    run, proposal, message = await gate.propose()
    await gate.world.users["alice"].react(message, "✅")
    await gate.world.quiesce()
    async with bot_down(gate.world):
        await bob.react(message, "✅")
    decision = await gate.services.deploy.approvals.decide(
        proposal_id=proposal.id, user_id=bob.id, role_ids=[], is_bot=False, channel_id=gate.world.dev.id,
        form="approve", via="reaction", message_id=message.id, emoji="✅",
    )  # fmt: skip
    assert decision.status == "ready" and await gate.state(run) == "merging"
    return run, proposal, message


async def test_a_restart_before_the_merge_was_recorded_merges_once(gate: Gate) -> None:
    """Stopped after the decision, before the merge: at start-up approvals are counted again (2/2) and
    the proposal is merged once."""
    run, proposal, _ = await _decided_then_stopped(gate, gate.add_approver("bob"))
    await gate.restart()
    await gate.world.quiesce()
    assert await gate.state(run) == "watching"
    assert git(gate.repo, "rev-parse", "HEAD") == proposal.head_sha
    assert _merged_refs(gate.repo) == [f"refs/mendbot/merged/{proposal.id}"]


async def test_a_withdrawal_while_stopped_mid_merge_is_honoured_at_start_up(gate: Gate) -> None:
    """alice takes her ✅ back while the merge is pending: at start-up only bob's counts (1/2), nothing
    is merged and the run waits for approval again, saying why."""
    run, _proposal, message = await _decided_then_stopped(gate, gate.add_approver("bob"))
    await gate.world.users["alice"].unreact(message, "✅")
    await gate.world.quiesce()
    await gate.restart()
    await gate.world.quiesce()
    assert await gate.state(run) == "awaiting_approval"
    assert _merged_refs(gate.repo) == []
    assert "1/2 approvals" in gate.last() and "Not merged" in gate.last()


@pytest.mark.deploy(required_approvals=1)
async def test_a_restart_during_the_watch_says_the_watch_goes_on(gate: Gate) -> None:
    """A deployed run is being watched when the bot restarts: the new bot says it is still watching."""
    run, _, message = await gate.propose()
    await gate.world.users["alice"].react(message, "✅")
    await gate.world.quiesce()
    assert await gate.state(run) == "watching"
    await gate.restart()
    await gate.world.quiesce()
    notes = [m.content for m in bot_messages(gate.world, gate.world.dev) if m.content.startswith("👀")]
    assert len(notes) == 1 and f"Run #{run.id}: back after a restart, still watching" in notes[0]


@pytest.mark.deploy(required_approvals=1)
async def test_an_environment_failure_during_the_watch_of_a_run_without_incident_is_no_regression(
    gate: Gate,
) -> None:
    """A fix asked for by hand has no incident, so its watch has no fingerprint; a failure Discord
    causes (recorded with no fingerprint either) in code the change did not touch is not the fix
    coming back: the run keeps watching instead of regressing (and, on a canary, rolling back)."""
    run, _, message = await gate.propose()
    assert run.incident_id is None
    await gate.world.users["alice"].react(message, "✅")
    await gate.world.quiesce()
    assert await gate.state(run) == "watching"
    gate.world.env.inject_error("POST", "/channels/*/messages", status=403, code=50013, message="Missing")
    await gate.world.users["mallory"].send(gate.world.general, "!roll 2d6")
    await gate.world.quiesce()
    refused = stored(gate.services.settings, "SELECT fingerprint FROM actions WHERE NOT ok")
    assert refused and all(fingerprint is None for (fingerprint,) in refused)  # the case: None on both sides
    assert await gate.state(run) == "watching"


@pytest.mark.deploy(required_approvals=1, watch_window_s=60)
async def test_a_watch_window_that_ran_out_while_stopped_is_reported_once_after_the_restart(
    gate: Gate,
) -> None:
    """The bot stops during the watch and is down past the window's end: once the new bot is up the
    run is resolved and that is said exactly once — not lost before chat was connected."""
    run, _, message = await gate.propose()
    await gate.world.users["alice"].react(message, "✅")
    await gate.world.quiesce()
    assert await gate.state(run) == "watching"
    gate.services.deploy.stop()  # the process dies: its watch timer with it
    await gate.world.env.advance_time(120)  # down for longer than the window had left
    await gate.restart()
    await gate.world.quiesce()
    assert await gate.state(run) == "resolved"
    texts = [m.content for m in bot_messages(gate.world, gate.world.dev)]
    resolved = [t for t in texts if t.startswith(f"✅ Run #{run.id}: quiet for 1 min after deploy")]
    assert len(resolved) == 1, texts[-3:]
    assert not any(t.startswith("👀") for t in texts)  # nothing left to watch: no "still watching"


async def test_a_reactions_answer_names_its_person_once(gate: Gate) -> None:
    """Mallory's ✅ on a proposal is answered "mallory isn't allow-listed to approve.": her name once,
    not after her mention as well ("@mallory mallory isn't allow-listed")."""
    _, _, message = await gate.propose()
    await gate.world.users["mallory"].react(message, "✅")
    await gate.world.quiesce()
    assert gate.last() == "mallory isn't allow-listed to approve."
