"""Forges: where proposals live. `LocalForge` (the default) or `GitHubForge`, behind `Forge`."""

from bot.forge.base import Forge, ForgeError, Proposal, ProposalState
from bot.forge.github import GitHubForge
from bot.forge.local import LocalForge

__all__ = ["Forge", "ForgeError", "GitHubForge", "LocalForge", "Proposal", "ProposalState"]
