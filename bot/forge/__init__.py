"""Forges: where proposals live. `LocalForge` (`bot.forge.local`, the default) or `GitHubForge`
(`bot.forge.github`, loaded only for `forge.kind: github`), behind `Forge` (`bot.forge.base`)."""
