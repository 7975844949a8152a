"""Seeded faults of every shape, complained about in plain words through the virtual Discord:
the request is recognised, the right target picked and the faulty file ranked first."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.model_double import ModelDouble
from tests.localise.driver import Outcome, localise
from tests.localise.seeds import Seed
from tests.localise.seeds_shapes import ALL_SEEDS

pytestmark = pytest.mark.cli


def _marks(seed: Seed) -> pytest.ParameterSet:
    if seed.known_miss is None:
        return pytest.param(seed, id=seed.name)
    return pytest.param(seed, id=seed.name, marks=pytest.mark.xfail(reason=seed.known_miss, strict=True))


@pytest.mark.parametrize("seed", [_marks(seed) for seed in ALL_SEEDS])
async def test_seeded_fault_is_found_from_plain_words(
    seed: Seed, tmp_path: Path, outcomes: list[Outcome]
) -> None:
    """A complaint about a seeded fault starts a run on its target with the faulty file ranked first."""
    async with ModelDouble() as model:
        outcome = await localise(seed, tmp_path, model)
    outcomes.append(outcome)
    assert outcome.recognised, f"no run started; the bot said: {outcome.replies}"
    assert any("On it: run #1" in reply for reply in outcome.replies), outcome.replies
    assert seed.right_kind(outcome.kind), (outcome.incident_kind, outcome.target_kind)
    assert (outcome.incident_kind is not None) == seed.incident
    assert outcome.files and outcome.files[0] == seed.file, outcome.suspects
    # The agent saw its source: a function's or a settings class's definition, a module-level constant's
    # assignment, a configuration file's text.
    assert f"### {seed.file}:{seed.function} lines" in outcome.evidence
    if seed.file.endswith(".py"):
        name = seed.function.rsplit(".", 1)[-1]
        defined = (f"def {name}", f"class {name}", f"{name} =", f"{name}: ")
        assert any(definition in outcome.evidence for definition in defined), name
