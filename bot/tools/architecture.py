"""The architecture diagram, generated from the code's own imports: `python -m mendbot.tools.architecture`.

It reads the import graph (grimp, the library import-linter checks the contracts with), folds every module
into its package under `bot/` (and `cogs`), and prints a Mermaid flowchart of which package imports which,
with the edges that another path already implies left out, so the layers read top to bottom.
docs/architecture.md holds its output; tests/test_architecture.py fails when the two differ.
"""

from __future__ import annotations

import sys
from collections import defaultdict

__all__ = ["diagram", "package_imports"]


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "bot" and len(parts) > 1 else parts[0]


def package_imports() -> dict[str, set[str]]:
    """Each package of `bot` (and `cogs`) → the packages it imports directly."""
    import grimp

    graph = grimp.build_graph("bot", "cogs")
    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        source = _package(module)
        edges[source]
        for imported in graph.find_modules_directly_imported_by(module):
            target = _package(imported)
            if target != source:
                edges[source].add(target)
    return dict(edges)


def _reduced(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The transitive reduction: an edge is kept only if no longer path joins its two ends."""

    def reachable(start: str, skip: tuple[str, str]) -> set[str]:
        seen: set[str] = set()
        stack = [start]
        while stack:
            node = stack.pop()
            for nxt in edges.get(node, ()):
                if (node, nxt) == skip or nxt in seen:
                    continue
                seen.add(nxt)
                stack.append(nxt)
        return seen

    return {
        source: {target for target in targets if target not in reachable(source, (source, target))}
        for source, targets in edges.items()
    }


def diagram() -> str:
    """The Mermaid flowchart (top to bottom: who imports whom)."""
    lines = ["flowchart TD"]
    for source, targets in sorted(_reduced(package_imports()).items()):
        for target in sorted(targets):
            lines.append(f"    {source.replace('.', '_')}[{source}] --> {target.replace('.', '_')}[{target}]")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(diagram())
