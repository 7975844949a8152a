"""Forges: where proposals live. `LocalForge` (`mendbot.forge.local`, the default) or `GitHubForge`
(`mendbot.forge.github`, loaded only for `forge.kind: github`), behind `Forge` (`mendbot.forge.base`)."""
