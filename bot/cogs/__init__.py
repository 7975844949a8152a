"""mendbot's own cogs: the announcements, "fix this", "ship it", `/runs`, `/dashboard`, the audit, drills
and dev mode — added to whatever bot mendbot is attached to (`mendbot.runtime.attachment.SURFACE`).

Thin: each parses a Discord event, calls a service of `mendbot` with plain values and renders the result.
A bot's own cogs live in its own package; mendbot's sample bot's are the repository's top-level `cogs/`.
"""
