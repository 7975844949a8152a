"""Approval follows the human through the virtual Discord: what changed while the bot was down, what
Discord cannot tell, objections that hold, and what is said before and after the merge-time recheck.

The proposal is put in place as in tests/test_ship_gate.py (real services, a real git repository, the
LocalForge, its message posted by the Improve cog); users act through simcord and discord.py.
"Down" is `bot_down`: Discord changes and the bot hears nothing of it, as when its process is stopped
(Discord does not replay to a new session what the old one missed); then a new bot starts on the same
database and repository.
"""

# ruff: noqa: F811  (the `gate` fixture is imported from test_ship_gate and taken as a parameter)

from __future__ import annotations

from typing import Any

import discord
import pytest

from mendbot.cogs.ship import DiscordSources
from mendbot.db import objections as objection_queries
from mendbot.db.proposals import Proposal
from mendbot.improve.runs import Run
from tests.harness.discord import bot_down, bot_messages
from tests.harness.repo import git
from tests.test_ship_gate import Gate, gate  # noqa: F401  (the fixture)

ONE = pytest.param(1, marks=pytest.mark.deploy(required_approvals=1), id="one-approval")
TWO = pytest.param(2, marks=pytest.mark.deploy(required_approvals=2), id="two-approvals")


def _merged(gate: Gate) -> bool:
    """Whether anything of a proposal reached main (the branch adds "four" to notes.txt)."""
    return "four" in git(gate.repo, "show", "main:notes.txt")


def _said(gate: Gate) -> list[str]:
    return [m.content for m in bot_messages(gate.world, gate.world.dev)]


async def _give(alice: Any, gate: Gate, message: discord.Message, signal: str) -> discord.Message:
    """alice approves `message` by a "ship it" reply (returned) or a ✅ on it (the proposal returned)."""
    if signal == "reaction":
        await alice.react(message, "✅")
        return message
    sent: discord.Message = await alice.send(gate.world.dev, "ship it", reply_to=message)
    return sent


async def _standing_approval(gate: Gate, signal: str, required: int) -> tuple[Run, Proposal, Any, Any]:
    """alice's approval, counted, with the merge still ahead: with two required it is 1/2; with one it
    was decided (the run is merging) and the process stopped before merging."""
    run, proposal, message = await gate.propose()
    alice = gate.world.users["alice"]
    if required == 2:
        approving = await _give(alice, gate, message, signal)
        await gate.world.quiesce()
        assert "(1/2)" in gate.last()
        return run, proposal, message, approving
    async with bot_down(gate.world):
        approving = await _give(alice, gate, message, signal)
    decision = await gate.services.deploy.approvals.decide(
        proposal_id=proposal.id, user_id=alice.id, role_ids=[], is_bot=False, channel_id=gate.world.dev.id,
        form="approve", via="reaction" if signal == "reaction" else "words", message_id=approving.id,
        emoji="✅" if signal == "reaction" else None,
    )  # fmt: skip
    assert decision.status == "ready" and await gate.state(run) == "merging"
    return run, proposal, message, approving


WITHDRAWALS = {
    # change made while the bot is down: (the signal it takes back, what the bot says it saw)
    "edited": ("words", "the message was edited while I was offline"),
    "deleted": ("words", "the message was deleted while I was offline"),
    "unreacted": ("reaction", "the reaction was removed while I was offline"),
}


@pytest.mark.parametrize("required", [ONE, TWO])
@pytest.mark.parametrize("change", sorted(WITHDRAWALS))
async def test_a_withdrawal_made_while_the_bot_is_down_holds_after_the_restart(
    gate: Gate, change: str, required: int
) -> None:
    """alice's approval is edited into "wait, don't ship it", deleted, or its ✅ removed while the bot
    is down: after the restart it no longer counts — said in the channel, nothing merged, the run
    waiting for approval (with two required, bob's approval then makes 1/2)."""
    signal, seen = WITHDRAWALS[change]
    run, _proposal, message, approving = await _standing_approval(gate, signal, required)
    alice = gate.world.users["alice"]
    async with bot_down(gate.world):
        if change == "edited":
            await alice.edit(approving, "wait, don't ship it")
        elif change == "deleted":
            await alice.delete(approving)
        else:
            await alice.unreact(message, "✅")
    await gate.restart()
    await gate.world.quiesce()
    if required == 2:
        await gate.add_approver("bob").send(gate.world.dev, "ship it", reply_to=message)
        await gate.world.quiesce()
        assert "(1/2)" in gate.last(), gate.last()
    said = _said(gate)
    assert any(f"<@{alice.id}> withdrawn: {seen}" in text for text in said), said[-4:]
    assert await gate.state(run) == "awaiting_approval"
    assert not _merged(gate)
    (withdrawn,) = await gate.events(run, "approval_withdrawn")
    assert withdrawn["seen"] == "reread"


@pytest.mark.deploy(required_approvals=2)
async def test_an_approval_edited_into_an_objection_while_down_holds_for_its_author(gate: Gate) -> None:
    """ "ship it" edited into "wait, don't ship it" while the bot was down is alice's objection after the
    restart: bob's and carol's approvals make 2/2 and still nothing merges until alice approves again."""
    _run, _proposal, message, approving = await _standing_approval(gate, "words", 2)
    alice = gate.world.users["alice"]
    async with bot_down(gate.world):
        await alice.edit(approving, "wait, don't ship it")
    await gate.restart()
    await gate.world.quiesce()
    assert any(f"What <@{alice.id}> approved now says otherwise" in text for text in _said(gate))
    for name in ("bob", "carol"):
        await gate.add_approver(name).send(gate.world.dev, "ship it", reply_to=message)
        await gate.world.quiesce()
    assert "(2/2)" in gate.last() and f"<@{alice.id}> objected" in gate.last(), gate.last()
    assert not _merged(gate)
    await alice.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert _merged(gate), _said(gate)[-3:]


@pytest.mark.deploy(required_approvals=1)
async def test_discord_unreadable_at_merge_time_holds_the_merge_with_the_reason(gate: Gate) -> None:
    """Discord answers 500 when the approving message is read again at merge time: the approval does not
    count, nothing merges, the reply says why — and once Discord answers, approving again merges."""
    run, _proposal, message = await gate.propose()
    alice = gate.world.users["alice"]
    gate.world.env.inject_error("GET", "/channels/*/messages/*", status=500, times=None)
    sent = await alice.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    (reply,) = gate.replies_to(sent)
    assert reply.startswith("✅ Approved by alice (1/1) — checking approvals before merging"), reply
    assert f"⏸ Not merged: Discord could not be read to confirm <@{alice.id}>'s approval" in reply, reply
    assert "500" in reply and "— merging" not in reply
    assert await gate.state(run) == "awaiting_approval" and not _merged(gate)
    gate.world.env.backend.faults.clear()  # Discord answers again
    again = await alice.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert "Merged" in gate.replies_to(again)[0] and _merged(gate)


async def test_discord_sources_tell_a_gone_message_from_an_unreadable_one(gate: Gate) -> None:
    """Read through discord.py: a message is found with its words and its decision reactions' users;
    deleted (404) it is gone; a 403 or a 500 is unreadable, not gone."""
    _run, _proposal, message = await gate.propose()
    alice = gate.world.users["alice"]
    sent = await alice.send(gate.world.dev, "ship it", reply_to=message)
    await alice.react(message, "✅")
    await alice.react(message, "🚀")  # not a decision: not read
    await gate.world.quiesce()
    sources = DiscordSources(gate.world.bot)
    dev = gate.world.dev.id
    found = await sources.read(dev, sent.id)
    assert (found.status, found.content) == ("found", "ship it")
    assert (await sources.read(dev, message.id)).reactions == {"✅": frozenset({alice.id})}
    gate.world.env.inject_error(
        "GET", "/channels/*/messages/*", status=403, code=50001, message="Missing Access"
    )
    forbidden = await sources.read(dev, sent.id)
    assert forbidden.status == "unreadable" and "Missing Access" in forbidden.error
    gate.world.env.inject_error("GET", "/channels/*/messages/*", status=500)
    assert (await sources.read(dev, sent.id)).status == "unreadable"
    await alice.delete(sent)
    assert (await sources.read(dev, sent.id)).status == "gone"


# -- objections hold ----------------------------------------------------------------------------------


async def test_wait_dont_ship_it_from_a_second_reviewer_holds_the_merge(gate: Gate) -> None:
    """Two required: alice approves, bob says "wait, don't ship it" — held; carol's "ship it" makes 2/2
    and still nothing merges; once bob approves himself, it merges."""
    run, _proposal, message = await gate.propose()
    alice, bob, carol = gate.world.users["alice"], gate.add_approver("bob"), gate.add_approver("carol")
    await alice.send(gate.world.dev, "ship it", reply_to=message)
    objecting = await bob.send(gate.world.dev, "wait, don't ship it", reply_to=message)
    await gate.world.quiesce()
    (held,) = gate.replies_to(objecting)
    assert held.startswith(f"⏸ Holding run #{run.id}: bob objected"), held
    approving = await carol.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    (answer,) = gate.replies_to(approving)
    assert "(2/2)" in answer and f"<@{bob.id}> objected" in answer, answer
    assert await gate.state(run) == "awaiting_approval" and not _merged(gate)
    await bob.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert "bob's objection is withdrawn" in gate.last() or "Merged" in gate.last()
    assert _merged(gate), _said(gate)[-3:]


async def test_an_objection_survives_a_restart_and_its_deletion_while_down_lets_go(gate: Gate) -> None:
    """bob's "hold on" is stored: after a restart two approvals still do not merge. bob deletes it while
    the bot is down: after the next restart that is said, and the next approval merges."""
    run, _proposal, message = await gate.propose()
    alice, bob, carol = gate.world.users["alice"], gate.add_approver("bob"), gate.add_approver("carol")
    objecting = await bob.send(gate.world.dev, "hold on", reply_to=message)
    await gate.world.quiesce()
    await gate.restart()
    await alice.send(gate.world.dev, "ship it", reply_to=message)
    await carol.react(message, "✅")
    await gate.world.quiesce()
    assert await gate.state(run) == "awaiting_approval" and not _merged(gate)
    async with bot_down(gate.world):
        await bob.delete(objecting)
    await gate.restart()
    await gate.world.quiesce()
    assert any(
        f"Objection by <@{bob.id}> withdrawn: the message was deleted while I was offline" in text
        for text in _said(gate)
    )
    await alice.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert _merged(gate), _said(gate)[-3:]


async def test_an_objection_edited_into_a_yes_lets_go(gate: Gate) -> None:
    """bob's "not yet" edited into "lgtm, merge" no longer holds (the edit does not approve by itself):
    the bot says so, and alice's and carol's approvals merge."""
    _run, _proposal, message = await gate.propose()
    bob, carol = gate.add_approver("bob"), gate.add_approver("carol")
    objecting = await bob.send(gate.world.dev, "not yet", reply_to=message)
    await gate.world.quiesce()
    await bob.edit(objecting, "lgtm, merge")
    await gate.world.quiesce()
    assert f"Objection by <@{bob.id}> withdrawn: the message was edited" in gate.last()
    await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await carol.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert _merged(gate), _said(gate)[-3:]


async def test_an_objection_in_the_proposals_thread_holds(gate: Gate) -> None:
    """In the thread started from the proposal's message, bob's "let's pause this" holds, and alice's
    "ship it" there counts as an approval."""
    run, _proposal, message = await gate.propose()
    alice, bob, carol = gate.world.users["alice"], gate.add_approver("bob"), gate.add_approver("carol")
    gate.world.env.backend.create_thread(gate.world.dev.id, "review", alice.id, message_id=message.id)
    (thread,) = gate.world.dev.threads
    said = await bob.send(thread, "let's pause this")
    approving = await alice.send(thread, "ship it")
    await gate.world.quiesce()

    def answers(to: discord.Message) -> list[str]:
        return [m.content for m in thread.history() if m.reference and m.reference.message_id == to.id]

    assert answers(said)[0].startswith(f"⏸ Holding run #{run.id}"), answers(said)
    assert "(1/2)" in answers(approving)[0], answers(approving)
    await carol.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert await gate.state(run) == "awaiting_approval" and not _merged(gate)


async def test_an_objection_naming_the_run_holds_it(gate: Gate) -> None:
    """bob, not replying, says "don't merge run N yet" in #dev: it holds run N. Naming it in passing
    ("run N looks fine") or in #general holds nothing and gets no answer."""
    run, proposal, message = await gate.propose()
    alice, bob, carol = gate.world.users["alice"], gate.add_approver("bob"), gate.add_approver("carol")
    await carol.send(gate.world.general, f"wait, don't ship run {run.id}")
    await carol.send(gate.world.dev, f"run {run.id} looks fine")
    await gate.world.quiesce()
    assert await objection_queries.standing(gate.services.db, proposal.id) == []
    assert not any(m.content.startswith("⏸") for m in bot_messages(gate.world, gate.world.general))
    said = await bob.send(gate.world.dev, f"don't merge run {run.id} yet")
    await gate.world.quiesce()
    (held,) = gate.replies_to(said)
    assert held.startswith(f"⏸ Holding run #{run.id}: bob objected"), held
    await alice.send(gate.world.dev, "ship it", reply_to=message)
    await carol.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert await gate.state(run) == "awaiting_approval" and not _merged(gate)


async def test_an_unclear_message_holds_for_its_author_until_they_say_which(gate: Gate) -> None:
    """alice's "ship it please" is not a clear yes: it holds the merge for her — bob's and carol's
    approvals make 2/2 and nothing merges — until she says "ship it"."""
    run, _proposal, message = await gate.propose()
    alice, bob, carol = gate.world.users["alice"], gate.add_approver("bob"), gate.add_approver("carol")
    unclear = await alice.send(gate.world.dev, "ship it please", reply_to=message)
    await gate.world.quiesce()
    (reply,) = gate.replies_to(unclear)
    assert "doesn't count as an approval" in reply and f"holds run #{run.id}" in reply, reply
    await bob.send(gate.world.dev, "ship it", reply_to=message)
    await carol.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert await gate.state(run) == "awaiting_approval" and not _merged(gate)
    await alice.send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert _merged(gate), _said(gate)[-3:]


async def test_an_objection_from_someone_not_allow_listed_holds_nothing(gate: Gate) -> None:
    """mallory (not allow-listed) says "wait": told it does not hold; alice and bob then merge it."""
    _run, proposal, message = await gate.propose()
    said = await gate.world.users["mallory"].send(gate.world.dev, "wait", reply_to=message)
    await gate.world.quiesce()
    assert gate.replies_to(said) == ["mallory isn't allow-listed, so that doesn't hold the merge."]
    assert await objection_queries.standing(gate.services.db, proposal.id) == []
    await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await gate.add_approver("bob").send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    assert _merged(gate)


@pytest.mark.deploy(required_approvals=1)
async def test_an_objection_after_the_merge_says_it_is_merged(gate: Gate) -> None:
    """ "wait" on a proposal already merged holds nothing and says how to undo it."""
    run, proposal, message = await gate.propose()
    await gate.world.users["alice"].react(message, "✅")
    await gate.world.quiesce()
    assert _merged(gate)
    said = await gate.add_approver("bob").send(gate.world.dev, "wait", reply_to=message)
    await gate.world.quiesce()
    assert gate.replies_to(said) == [f"Run #{run.id} is already merged: `/rollback {run.id}` undoes it."]
    assert await objection_queries.standing(gate.services.db, proposal.id) == []


# -- what is said, in which order -----------------------------------------------------------------------


@pytest.mark.deploy(required_approvals=1)
async def test_merging_is_said_only_after_the_recheck_passes(gate: Gate) -> None:
    """The reply to the approving message says "checking approvals before merging", then that the
    approvals still stand — merging, then the deploy report, in that order."""
    _run, proposal, message = await gate.propose()
    sent = await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    (reply,) = gate.replies_to(sent)
    checking = reply.index(f"— checking approvals before merging `{proposal.head_sha[:7]}`…")
    merging = reply.index(f"still stand at merge time (1/1: <@{gate.world.users['alice'].id}>) — merging")
    merged = reply.index("🚀 Merged")
    assert checking < merging < merged, reply
    assert reply.count("— merging") == 1


async def test_a_recheck_that_drops_an_approver_never_says_merging(gate: Gate) -> None:
    """carol approves through a role, loses it, alice approves: the reply says "checking approvals" and
    then "Not merged" — never "merging"."""
    role = gate.world.guild.create_role("maintainers")
    gate.services.settings.access.allowed_role_ids = [role.id]
    carol = gate.world.guild.add_member(gate.world.env.create_user("carol"), roles=[role])
    _run, _proposal, message = await gate.propose()
    await carol.react(message, "✅")
    await gate.world.quiesce()
    gate.world.env.backend.remove_member_role(gate.world.guild.id, carol.id, role.id)
    sent = await gate.world.users["alice"].send(gate.world.dev, "ship it", reply_to=message)
    await gate.world.quiesce()
    (reply,) = gate.replies_to(sent)
    assert reply.index("(2/2) — checking approvals before merging") < reply.index("⏸ Not merged"), reply
    assert "— merging" not in reply and not _merged(gate)
