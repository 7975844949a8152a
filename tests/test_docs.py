"""README is a quickstart a newcomer can finish; every relative link in it and in docs/ leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MAX_README_LINES = 220
# A markdown link or image: [text](target) or ![alt](target), the target up to a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks (a link-like string in code is not a link)."""
    kept: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        opened = re.match(r"^(`{3,}|~{3,})", line)
        if fence is None and opened:
            fence = opened.group(1)
        elif fence is not None and line.startswith(fence):
            fence = None
        elif fence is None:
            kept.append(line)
    return "\n".join(kept)


def _relative_links(doc: Path) -> list[str]:
    targets = LINK.findall(_prose(doc.read_text()))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_readme_is_a_quickstart() -> None:
    """README.md stays short enough to finish; the rest lives in docs/."""
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_docs_file_is_linked_from_readme() -> None:
    """Each file in docs/ is reachable from README's "Where to read next"."""
    linked = {(REPO / target.split("#", 1)[0]).resolve() for target in _relative_links(REPO / "README.md")}
    for doc in DOCS[1:]:
        assert doc.resolve() in linked, f"README.md does not link {doc.relative_to(REPO)}"


def _anchors(doc: Path) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#{1,6} +(.+)$", _prose(doc.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.relative_to(REPO).as_posix())
def test_every_relative_link_points_at_a_file(doc: Path) -> None:
    """A relative link or image in README.md or docs/*.md names a file that exists, from where it is,
    and a heading of it when it names one."""
    missing = []
    for target in _relative_links(doc):
        path, _, anchor = target.partition("#")
        linked = doc.parent / path
        wrong_heading = (
            anchor and linked.suffix == ".md" and linked.exists() and anchor not in _anchors(linked)
        )
        if not linked.exists() or wrong_heading:
            missing.append(target)
    assert missing == [], f"{doc.relative_to(REPO)} links to missing files or headings: {missing}"


def test_link_check_sees_links_and_images() -> None:
    """The link pattern finds links and images, and skips URLs, anchors and fenced code."""
    text = "[a](docs/x.md#y) ![b](pic.png) [c](https://e.org) [d](#here)\n```\n[e](nope.md)\n```\n"
    assert LINK.findall(_prose(text)) == ["docs/x.md#y", "pic.png", "https://e.org", "#here"]


def test_anchors_are_the_ones_github_makes(tmp_path: Path) -> None:
    """A heading's anchor as GitHub writes it, so a link to a section can be checked."""
    doc = tmp_path / "x.md"
    doc.write_text("# Top\n## The playground's grammar (one action per line)\n```\n# not a heading\n```\n")
    assert _anchors(doc) == {"top", "the-playgrounds-grammar-one-action-per-line"}


# `/run <id> resume` however it is written: bare, `action=resume`, `action:resume`.
RESUME = re.compile(r"/run (?:\{[^}]*\}|<[^>]*>|\S+) (?:action[=:])?(?:resume|redo)\b")


def _resume_mentions() -> list[str]:
    """Every mention of `/run N resume|redo` shown to users: docs, replies in bot/ and cogs/, prompts."""
    sources = [*DOCS, *sorted((REPO / "bot").rglob("*.py")), *sorted((REPO / "cogs").rglob("*.py"))]
    sources += sorted((REPO / "prompts").rglob("*.md"))
    return [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for path in sources
        for match in RESUME.finditer(path.read_text())
    ]


def test_resume_is_written_the_one_way_the_bot_accepts() -> None:
    """`/run N action:resume` (and `action:redo`), as Discord's client writes the option, everywhere
    a user reads it — the playground takes the same spelling."""
    mentions = _resume_mentions()
    assert mentions, "the pattern no longer finds the mentions"
    assert [m for m in mentions if " action:" not in m] == []
