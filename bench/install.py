"""What `pip install mendbot` adds to an environment: the wheel, and every distribution it requires.

Builds this checkout's wheel (as the tests do: tests/harness/wheel.py), then walks mendbot's
requirements (and theirs) as this environment has them installed, summing the files each distribution's
RECORD lists. Prints one `name value unit` line per figure: the plain install, and with each extra on top.

    .venv/bin/python bench/install.py [--short]
"""

from __future__ import annotations

import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sizes import SHORT  # noqa: F401  (the short mode is the same: one build, one walk)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.wheel import build_wheel  # noqa: E402  (the checkout's tests, found above)


def _size(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def closure(name: str, extras: frozenset[str] = frozenset()) -> dict[str, metadata.Distribution]:
    """Every installed distribution `name` needs with `extras`, by canonical name (mendbot excluded)."""
    found: dict[str, metadata.Distribution] = {}
    todo: list[tuple[str, frozenset[str]]] = [(name, extras)]
    while todo:
        current, wanted = todo.pop()
        dist = metadata.distribution(current)
        for line in dist.requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if requirement.marker is not None and not any(
                requirement.marker.evaluate(environment) for environment in environments
            ):
                continue
            key = canonicalize_name(requirement.name)
            if key not in found:
                found[key] = metadata.distribution(requirement.name)
                todo.append((requirement.name, frozenset(requirement.extras)))
    found.pop("mendbot", None)
    return found


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mendbot-install-") as temp:
        wheel = build_wheel(Path(temp))
        print(f"install_wheel_size {wheel.stat().st_size / 1e6:.2f} MB")
    mendbot = metadata.distribution("mendbot")
    extras = sorted(set(mendbot.metadata.get_all("Provides-Extra") or []) - {"dev", "all"})
    plain = closure("mendbot")
    plain_size = sum(_size(dist) for dist in plain.values())
    print(f"install_packages {len(plain)} count")
    print(f"install_size {plain_size / 1e6:.0f} MB")
    biggest = sorted(plain.items(), key=lambda item: _size(item[1]), reverse=True)[:5]
    for key, dist in biggest:
        print(f"install_size_{key.replace('-', '_')} {_size(dist) / 1e6:.0f} MB")
    for extra in extras:
        more = {k: v for k, v in closure("mendbot", frozenset({extra})).items() if k not in plain}
        print(f"install_extra_{extra}_packages {len(more)} count")
        print(f"install_extra_{extra}_size {sum(_size(dist) for dist in more.values()) / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
