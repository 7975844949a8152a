"""The approval grammar's shortcut for ASCII text (every message a bot reads is normalised) reads
exactly what the whole normalisation reads."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mendbot.trust.grammar import normalise, normalise_unicode, read_approval, run_references


@settings(max_examples=300, derandomize=True)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_ascii_text_is_normalised_as_the_whole_way_would(text: str) -> None:
    assert normalise(text) == normalise_unicode(text)


def test_the_shortcut_keeps_what_the_grammar_reads() -> None:
    assert run_references("Ship RUN #7, and run 9") == [7, 9]
    assert read_approval("SHIP IT").verdict == "approve"
    assert normalise("ｓｈｉｐ it") == "ship it"  # not ASCII: the whole way
