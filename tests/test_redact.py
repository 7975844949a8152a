"""The redactor: the bot's own secret values in every form they can leave in, and token shapes."""

from __future__ import annotations

import base64
import random
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from mendbot.trust.redact import REDACTED, Redactor, redact_text
from tests.harness.discord import make_settings

# Values with no token shape, so only knowing them can catch them. The first encodes to base64 with
# '+' and '/' (and so differs in the URL-safe alphabet) and needs percent-encoding.
ODD = "pa ss/wörd+q?=&ÿÿ~é9"
PLAIN = "correct-horse-battery-staple-42"
OTHER = "Zq81mXv0Lr7TbW2p"


@pytest.fixture
def redactor() -> Redactor:
    return Redactor([ODD, PLAIN, OTHER])


def _b64(value: bytes, urlsafe: bool) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(value).decode()


def test_the_alphabets_differ_for_the_odd_value() -> None:
    """The test value really exercises both base64 alphabets and percent-encoding."""
    raw = ODD.encode()
    assert _b64(raw, False) != _b64(raw, True)
    assert quote(ODD, safe="") != quote_plus(ODD) != ODD


def test_plain_values_are_redacted_where_token_shapes_are_not(redactor: Redactor) -> None:
    """A known value of no recognisable shape is replaced; the shape-only redaction would miss it."""
    line = f"login with {PLAIN} and {OTHER} and {ODD} failed"

    assert redact_text(line) == line
    assert redactor.text(line) == f"login with {REDACTED} and {REDACTED} and {REDACTED} failed"


@pytest.mark.parametrize("urlsafe", [False, True], ids=["standard", "urlsafe"])
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
def test_base64_forms_are_redacted(redactor: Redactor, urlsafe: bool, padded: bool) -> None:
    """The base64 of a value, in either alphabet, with or without padding, is replaced whole."""
    for secret in (ODD, PLAIN, OTHER):
        encoded = _b64(secret.encode(), urlsafe)
        if not padded:
            encoded = encoded.rstrip("=")

        assert redactor.text(f"cookie {encoded} end") == f"cookie {REDACTED} end"


@pytest.mark.parametrize("urlsafe", [False, True], ids=["standard", "urlsafe"])
@pytest.mark.parametrize("shift", [0, 1, 2])
def test_a_value_inside_a_base64_blob_is_redacted(redactor: Redactor, shift: int, urlsafe: bool) -> None:
    """A value encoded as part of a bigger blob, at any byte alignment, leaves no piece of itself."""
    rng = random.Random(shift)
    for secret in (ODD, PLAIN, OTHER):
        raw = secret.encode()
        before = bytes(rng.randrange(256) for _ in range(30 + shift))
        after = bytes(rng.randrange(256) for _ in range(31))
        blob = _b64(before + raw + after, urlsafe)
        # What an attacker could still decode: the blob's characters covering only the value's bytes.
        first, end = -(-8 * len(before) // 6), 8 * (len(before) + len(raw)) // 6

        cleaned = redactor.text(f"config={blob}")

        assert REDACTED in cleaned
        assert blob[first:end] not in cleaned


def test_hex_forms_in_either_case_are_redacted(redactor: Redactor) -> None:
    """The hex of a value, lower or upper case, is replaced."""
    lower = PLAIN.encode().hex()

    assert redactor.text(f"dump {lower} / {lower.upper()}") == f"dump {REDACTED} / {REDACTED}"


def test_percent_encoded_forms_are_redacted(redactor: Redactor) -> None:
    """A value in a URL, escaped by quote or quote_plus (upper or lower case escapes), is replaced."""
    for encoded in (quote(ODD, safe=""), quote_plus(ODD), quote(ODD, safe="").lower()):
        assert redactor.text(f"GET /cb?key={encoded}&x=1") == f"GET /cb?key={REDACTED}&x=1"


def test_a_value_shorter_than_eight_characters_is_not_looked_for() -> None:
    """A 7-character value would redact ordinary text, so it is ignored."""
    redactor = Redactor(["hunter2"])

    assert redactor.text("hunter2 logged in") == "hunter2 logged in"


def test_unrelated_text_is_untouched(redactor: Redactor) -> None:
    """Ordinary words, commit SHAs, UUIDs and base64 of other data pass through as they are."""
    line = (
        "merged 9f2c3b1e8d7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e into main "
        "(run 3f0e6c1a-7b2d-4e59-9c1f-2a8b7d6e5c4b); "
        "the staple horse is correct; payload aGVsbG8gd29ybGQsIGhvdyBhcmUgeW91Pw== ok"
    )

    assert redactor.text(line) == line


def test_token_shapes_are_redacted_without_known_values() -> None:
    """A redactor that knows no values still replaces token shapes, like `redact_text`."""
    token = "sk-ant-api03-" + "a1B2c3D4e5" * 3

    assert Redactor().text(f"key {token} used") == f"key {REDACTED} used"


def test_text_is_capped_only_when_a_limit_is_given(redactor: Redactor) -> None:
    """No limit keeps all of a long text; a limit caps it and says how much was left out."""
    long_text = "x" * 10_000

    assert redactor.text(long_text) == long_text
    capped = redactor.text(long_text, 100)
    assert capped.startswith("x" * 100)
    assert capped.endswith("more chars]")
    assert len(capped) < 130


def test_a_value_split_by_the_cap_on_huge_input_leaves_no_head() -> None:
    """When a huge input is cut before scanning, the piece of a value left at the cut is not shown."""
    secret = "Vq3" + "7Lm0Xr2Tb9" * 6
    # Redactions shrink the text so much that the cut lands inside what the caller sees.
    text = f"{secret} " * 70 + secret

    cleaned = Redactor([secret]).text(text, 100)

    assert secret[:8] not in cleaned


def test_structured_values_are_redacted_at_any_depth(redactor: Redactor) -> None:
    """Known values inside nested dicts and lists, and in keys, are replaced; other values are kept."""
    value = {"run": {"steps": [f"curl -u {PLAIN}", {"note": f"x{OTHER}y"}], "count": 3}, ODD: "who"}

    assert redactor.value(value) == {
        "run": {"steps": [f"curl -u {REDACTED}", {"note": f"x{REDACTED}y"}], "count": 3},
        REDACTED: "who",
    }


def test_structured_values_keep_the_key_name_rule_and_caps(redactor: Redactor) -> None:
    """Values under secret-named keys are replaced whole; long lists and deep nesting are capped."""
    value = {"api_key": "abc", "Authorization": "x", "items": list(range(60)), "a": {"b": {"c": {"d": {}}}}}

    cleaned = redactor.value(value)

    assert cleaned["api_key"] == cleaned["Authorization"] == REDACTED
    assert len(cleaned["items"]) == 51
    assert "[too deep]" in str(cleaned["a"])


def test_from_settings_treats_empty_and_missing_secrets_as_unset(tmp_path: Path) -> None:
    """Only the credentials that are set are learned; an empty one does not redact everything."""
    settings = make_settings(tmp_path / "data", discord_token="", anthropic_api_key=None, github_token=OTHER)

    redactor = Redactor.from_settings(settings)

    assert redactor.text(f"push with {OTHER}") == f"push with {REDACTED}"
    assert redactor.text("nothing secret here") == "nothing secret here"


def test_add_learns_a_value_at_run_time() -> None:
    """A value added after construction is redacted from then on, in its encoded forms too."""
    redactor = Redactor()
    assert redactor.text(PLAIN) == PLAIN

    redactor.add(PLAIN)

    assert redactor.text(f"{PLAIN} {PLAIN.encode().hex()}") == f"{REDACTED} {REDACTED}"


def test_a_short_string_seen_before_a_value_is_learnt_is_redacted_after() -> None:
    """Short strings are remembered once scrubbed; learning a value forgets them, so a string
    recorded before the value was known is not served from memory unredacted afterwards."""
    redactor = Redactor()
    short = PLAIN[:20]
    assert redactor.value({"note": short}) == {"note": short}

    redactor.add(short)

    assert redactor.value({"note": short}) == {"note": REDACTED}
    assert redactor.text(short, 100) == REDACTED
