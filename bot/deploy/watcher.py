"""Hand edits on disk go through the same reload path as a deploy.

`HandEditWatcher` follows the live checkout's cog packages, `prompts/`, `bot/` and `pyproject.toml`
with `mendbot.kernel.filewatch` (inotify, debounced, so an editor's write-rename burst is one event),
classifies the changed files like a merged change, applies cogs and prompts with the shared `Reloader` and
posts the ✅/❌ report. A hand edit under `bot/` (or `pyproject.toml`) is only reported as
"restart needed": a half-typed edit to the core must never restart the bot by itself.

Files a deploy has just applied (the fast-forward of the live checkout writes them too) are
skipped: the Reloader remembers each file's mtime when it applied it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

import msgspec

from mendbot.deploy.reload import (
    EXTENSION_PACKAGES,
    PROMPTS_DIR,
    RESTART_DIRS,
    RESTART_FILES,
    Reloader,
    classify,
    render,
)
from mendbot.kernel.filewatch import changed_files
from mendbot.kernel.log import get_logger
from mendbot.kernel.uncommitted import not_on_main, unseen_line

__all__ = ["HandEditWatcher"]

_log = get_logger(__name__)

_WATCHED_SUFFIXES = (".py", ".md", ".toml")


def _is_source(path: Path) -> bool:
    """Source files only: no bytecode or editor swap files (hidden entries are never reported)."""
    return path.name.endswith(_WATCHED_SUFFIXES)


class HandEditWatcher:
    def __init__(
        self,
        repo_root: Path,
        reloader: Reloader,
        report: Callable[[str], Awaitable[None]],
        *,
        extension_packages: Sequence[str] = EXTENSION_PACKAGES,
        debounce_ms: int = 300,
    ) -> None:
        self.repo_root = repo_root.resolve()
        self.reloader = reloader
        self._report = report
        self._extension_packages = tuple(extension_packages)
        self._debounce_ms = debounce_ms

    def watched_paths(self) -> list[Path]:
        names = [*self._extension_packages, PROMPTS_DIR, *sorted(RESTART_DIRS), *sorted(RESTART_FILES)]
        return [path for name in names if (path := self.repo_root / name).exists()]

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Apply hand edits until `stop` is set (runs as a daemon task)."""
        paths = self.watched_paths()
        if not paths:
            _log.warning("hand-edit watcher has nothing to watch", repo_root=str(self.repo_root))
            return
        async for changed in changed_files(paths, keep=_is_source, debounce_ms=self._debounce_ms, stop=stop):
            try:
                await self.apply_changes(changed)
            except Exception:
                # One bad batch must not end the watcher: the next save gets its own chance.
                _log.exception("hand edit not applied")

    async def apply_changes(self, paths: Iterable[Path]) -> str | None:
        """Classify, apply and report changed files; returns the report (None: nothing to do)."""
        async with self.reloader.applying() as apply:
            fresh = sorted(
                {
                    path.resolve().relative_to(self.repo_root).as_posix()
                    for path in paths
                    if path.resolve().is_relative_to(self.repo_root)
                    and not self.reloader.already_applied(path)
                }
            )
            plan = classify(fresh, extension_packages=self._extension_packages)
            if plan.empty:
                return None
            _log.info("hand edit seen", files=fresh)
            report = await apply(msgspec.structs.replace(plan, restart=False))
        text = render(report) if report.results else ""
        if plan.restart:
            files = ", ".join(f"`{path}`" for path in plan.restart_paths)
            text += (
                f"\n⚠️ {files} changed on disk: restart mendbot to apply it "
                "(hand edits to the core never restart it by themselves)."
            )
        text = "✏️ Hand edit on disk:\n" + text.strip()
        if (unseen := unseen_line(await not_on_main(self.repo_root, fresh))) is not None:
            text += "\n" + unseen
        await self._report(text)
        return text
