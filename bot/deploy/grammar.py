"""What counts as "ship it": the one approval grammar, applied to words and to reactions.

"Ship it" is the one decision mendbot cannot take for itself, so a message approves only when it is
unmistakably a yes. `read_approval(text)` first normalises the text so that what a reader sees is
what is judged:

1. NFKC (full-width and other compatibility forms become plain letters), then casefold;
2. every format character (Unicode category Cf: zero-width spaces and joiners, bidi controls, soft
   hyphens…), variation selectors and emoji skin-tone modifiers are removed;
3. every non-ASCII character that is a confusable of an ASCII one (Cyrillic "о", Greek "ι", the
   right single quotation mark…) is folded to that ASCII "skeleton" with the Unicode confusables
   table as the `confusable-homoglyphs` package ships it — so a look-alike letter can neither
   sneak a negation past the grammar ("dоn't ship it") nor hide an approval.

Then, in order:

- text that mentions none of the shipping words (ship, merge, lgtm, approve, deploy, reject, the
  check-mark emoji…) is not about approval at all: verdict "none", nothing to answer;
- inline code or a code block, a quoted line (`>`) or quotation marks, or a question mark anywhere:
  "unclear" — someone is citing or asking, not deciding;
- the whole message (mentions of the bot, surrounding spaces, commas and a final "." or "!" left
  out) must be one of the phrases in `FORMS`; the approval phrases must carry no negation word
  (`NEGATIONS`);
- anything else that mentions shipping is "unclear": it does not count, and the caller answers
  with `Reading.reply()`, which says exactly what would count.

`FORMS` is a small table: a new form (e.g. "ship it unproven") is one more row. `reaction_form`
maps a reaction emoji (✅ ✔️ ☑️ approve, 🔐 is the security form, ❌ rejects) with the same
normalisation.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from confusable_homoglyphs.confusables import confusables_data

from bot.db.approvals import ApprovalForm

__all__ = [
    "FORMS",
    "NEGATIONS",
    "Form",
    "Reading",
    "Verdict",
    "normalise",
    "reaction_form",
    "read_approval",
    "what_counts",
]

Verdict = Literal["approve", "reject", "unclear", "none"]


@dataclass(frozen=True)
class Form:
    """One decision and the whole messages (already normalised) that express it."""

    form: ApprovalForm
    phrases: tuple[str, ...]
    emoji: tuple[str, ...] = ()


FORMS: tuple[Form, ...] = (
    Form("approve", ("ship it", "ship", "lgtm merge", "merge it", "merge", "approve", "approved"),
         ("✅", "✔", "☑", "✓")),
    Form("approve_security", ("ship it security",), ("🔐",)),
    Form("approve_unproven", ("ship it unproven",)),
    Form("reject", ("don't ship", "don't ship it", "do not ship", "do not ship it", "dont ship",
                    "dont ship it", "don't merge", "don't merge it", "reject", "rejected"), ("❌",)),
)  # fmt: skip


# A word that turns an approval phrase around, or holds it back. The approval phrases contain none
# of these, so they matter only for the reason given; they are listed to make the rule explicit.
def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


NEGATIONS: frozenset[str] = _vocabulary(
    """not no nope nah never dont don't doesnt doesn't didnt didn't wont won't wouldnt wouldn't
    shouldnt shouldn't cant can't cannot couldnt couldn't isnt isn't arent aren't hold wait stop
    later yet without neither nor hardly"""
)
_SHIPPING_WORDS = re.compile(r"ship|merge|lgtm|approv|deploy|reject|[✅✔☑✓🔐❌]")
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>")
_ADDRESS = re.compile(r"^(?:(?:hey|hi|ok|okay)\s+)?@?mendbot\b[\s,:;!.-]*")
_WORD = re.compile(r"[a-z0-9']+")
_QUESTION_MARKS = frozenset("?¿؟⸮;")  # ";" is where NFKC leaves the Greek question mark
_QUOTE_MARKS = frozenset('"«»„‟‹›「」『』〝〞〟')
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_VARIATION_SELECTORS = (range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0))


@dataclass(frozen=True)
class Reading:
    """The verdict on one message: `form` is set exactly when the verdict is approve or reject."""

    verdict: Verdict
    form: ApprovalForm | None
    reason: str  # "phrase", "code", "quoted", "question", "negated", "not_whole" or "" (verdict none)
    text: str  # the normalised text that was judged

    @property
    def shipping(self) -> bool:
        """True when the message is about approving at all (a clear decision or an unclear one)."""
        return self.verdict != "none"

    def reply(self) -> str:
        """For an unclear message: why it did not count, and what would."""
        why = {
            "code": "it is inside code",
            "quoted": "it is quoted",
            "question": "it is a question",
            "negated": "it has a negation in it",
            "not_whole": "it is not the whole message",
        }.get(self.reason, "it is not a clear yes")
        return f"That doesn't count as an approval ({why}). {what_counts()}"


def what_counts() -> str:
    """The rule in one line, for replies (the README lists the same)."""
    return (
        "What counts, as the whole message replying to the proposal: **ship it** (or `ship`, "
        "`lgtm, merge`, `merge it`, `approve`, ✅); **ship it security** (or 🔐) for a change to "
        "protected paths; **ship it unproven** for a fix without proof; **don't ship** (or `reject`, ❌)"
        " rejects."
    )


def _fold_char(char: str) -> str:
    if char.isascii():
        return char
    for glyph in confusables_data.get(char, ()):
        candidate: str = glyph["c"]
        if candidate.isascii() and candidate.isprintable():
            return candidate
    return char


def _hidden(char: str) -> bool:
    code = ord(char)
    if unicodedata.category(char) == "Cf" or code in _SKIN_TONES:
        return True
    return any(code in selectors for selectors in _VARIATION_SELECTORS)


@lru_cache(maxsize=1024)
def normalise(text: str) -> str:
    """NFKC, casefold, hidden characters out, confusables folded to their ASCII skeleton."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(char for char in text if not _hidden(char))
    # Folding may produce capitals (Cherokee "Ꭰ" → "D") and new compatibility forms: once more.
    return unicodedata.normalize("NFKC", "".join(_fold_char(char) for char in text)).casefold()


def _phrase(text: str) -> str:
    """The message as a phrase: no mentions, no address to the bot, no commas or final . and !."""
    text = _MENTION.sub(" ", text)
    text = " ".join(text.replace(",", " ").split())
    text = _ADDRESS.sub("", text)
    return text.rstrip(".! ").strip()


def _table() -> dict[str, ApprovalForm]:
    table: dict[str, ApprovalForm] = {}
    for row in FORMS:
        for phrase in (*row.phrases, *row.emoji):
            table[normalise(phrase)] = row.form
    return table


_TABLE = _table()


def _quoted(text: str, folded: str) -> bool:
    if any(line.lstrip().startswith(">") for line in text.splitlines()):
        return True
    # Curly single quotes are apostrophes ("don’t") unless they wrap the message, checked below.
    marks = (char for char in text if _fold_char(char) != "'")
    if any(char in _QUOTE_MARKS or unicodedata.category(char) in ("Pi", "Pf") for char in marks):
        return True
    # “ and ” fold to two apostrophes; 'ship it' in single quotes is a quotation too.
    stripped = folded.strip()
    return "''" in folded or (len(stripped) > 1 and stripped[0] == "'" and stripped[-1] == "'")


def read_approval(text: str) -> Reading:
    """Judge one message against the grammar (see the module docstring)."""
    nfkc = unicodedata.normalize("NFKC", text)
    folded = normalise(text)
    if not _SHIPPING_WORDS.search(folded) and not _SHIPPING_WORDS.search(re.sub(r"[\W_]+", "", folded)):
        return Reading("none", None, "", folded)

    def unclear(reason: str) -> Reading:
        return Reading("unclear", None, reason, folded)

    if "`" in nfkc or "`" in folded:
        return unclear("code")
    if _quoted(nfkc, folded):
        return unclear("quoted")
    if any(char in _QUESTION_MARKS for char in nfkc + folded):
        return unclear("question")
    phrase = _phrase(folded)
    words = set(_WORD.findall(phrase))
    negated = bool(words & NEGATIONS) or any(word.endswith("n't") for word in words)
    form = _TABLE.get(phrase)
    if form is not None and (form == "reject" or not negated):
        return Reading("reject" if form == "reject" else "approve", form, "phrase", folded)
    return unclear("negated" if negated else "not_whole")


def reaction_form(emoji: str) -> ApprovalForm | None:
    """The decision a reaction stands for (✅ ✔️ ☑️ approve, 🔐 security form, ❌ reject), or None."""
    form = _TABLE.get(normalise(emoji).strip())
    return form if form is not None and normalise(emoji).strip() in _EMOJI else None


_EMOJI = frozenset(normalise(emoji) for row in FORMS for emoji in row.emoji)
