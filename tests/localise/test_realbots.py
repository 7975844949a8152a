"""Faults seeded into the real public bots in ../shared/realbots/ (their own cogs, a small edit in a
temporary copy) are found from plain words, without a model and with one: the run's target is the kind
the fault is in, and the faulty function is among the first three suspects the rendered evidence lists —
the faulty file first, unless the seed says why not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.localise.realbots import REALBOT_SEEDS, RealbotSeed, available, localise_realbot


def _param(seed: RealbotSeed, with_model: bool) -> pytest.ParameterSet:
    marks = [pytest.mark.skipif(not available(seed), reason=f"no {seed.bot} in ../shared/realbots/")]
    return pytest.param(seed, with_model, id=f"{seed.name}-{'model' if with_model else 'alone'}", marks=marks)


@pytest.mark.parametrize(
    ("seed", "with_model"),
    [_param(seed, with_model) for seed in REALBOT_SEEDS for with_model in (False, True)],
)
async def test_a_fault_seeded_into_a_real_bot_is_found_from_plain_words(
    seed: RealbotSeed, with_model: bool, tmp_path: Path
) -> None:
    """The complaint resolves to the seed's kind and the rendered evidence names the faulty code."""
    outcome = await localise_realbot(seed, tmp_path, with_model=with_model)
    assert outcome.recognised and seed.right_kind(outcome.kind), outcome.kind
    assert outcome.function_top3, outcome.suspects
    assert outcome.file_top1 or seed.known_miss is not None, outcome.suspects
