"""What counts as "ship it", and what holds a merge: the one grammar for words and reactions.

"Ship it" is the one decision mendbot cannot take for itself, so a message approves only when it is
unmistakably a yes — and anything an approver says against shipping, or that the grammar cannot read
as a yes or a no, holds the merge rather than being ignored. `read_approval(text)` first normalises
the text so that what a reader sees is what is judged:

1. NFKC (full-width and other compatibility forms become plain letters), then casefold;
2. every format character (Unicode category Cf: zero-width spaces and joiners, bidi controls, soft
   hyphens…), variation selectors and emoji skin-tone modifiers are removed;
3. every non-ASCII character that is a confusable of an ASCII one (Cyrillic "о", Greek "ι", the
   right single quotation mark…) is folded to that ASCII "skeleton" with the Unicode confusables
   table as the `confusable-homoglyphs` package ships it — so a look-alike letter can neither
   sneak a negation past the grammar ("dоn't ship it") nor hide an approval.

Then the message (mentions of the bot, an address to it, commas and a final "." or "!" left out)
gets one verdict, in this order:

- "reject" / "approve": the whole message is one of the phrases in `FORMS` (the approval phrases
  carry no negation and no holding word), or a lone decision emoji;
- "object" — it holds the merge — when one of these constructions is in it, whatever else is:
  a word that asks to wait or stop (`HOLDS`, matched as word beginnings: "wait", "waiting", "hold
  on", "blocked", "pause", "later"…) anywhere; a negation (`NEGATIONS`, or any word ending in
  "n't") in a message about shipping ("I wouldn't merge it", "never deploy this", "ship it, not");
  or a message that opens with a refusal (`REFUSALS`: "no", "nope", "nah", "not yet"…);
- "unclear" — it holds too, for that person, until they say which — for a message about shipping
  that is none of the above (inline code or a code block, a quoted line or quotation marks, a
  question, or anything more than a whole phrase: "ship it please", a bare "lgtm"), and for a
  negation in a message that does not name shipping ("I don't get this diff"): the grammar cannot
  tell whether it objects;
- "none": nothing about shipping and no negation or holding word ("thanks!", "looks fine to me").

"About shipping" means a shipping word (ship, merge, lgtm, approve, deploy, reject, the check-mark
emoji…). The words are classes, not phrases: a new way to say "wait" is one more word beginning in
`HOLDS`, and every sentence built with it is read the same way. `FORMS` is a small table: a new
form (e.g. "ship it unproven") is one more row. `reaction_form` maps a reaction emoji (✅ ✔️ ☑️
approve, 🔐 is the security form, ❌ rejects) with the same normalisation. `run_references` finds
the runs a message names ("run 7", "#7").
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any, Literal

import msgspec

from mendbot.db.approvals import ApprovalForm

__all__ = [
    "FORMS",
    "HOLDS",
    "NEGATIONS",
    "REFUSALS",
    "Form",
    "Reading",
    "Verdict",
    "normalise",
    "reaction_form",
    "read_approval",
    "run_references",
    "what_counts",
]

Verdict = Literal["approve", "reject", "object", "unclear", "none"]


class Form(msgspec.Struct, frozen=True):
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


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Words that turn what they go with around: with a shipping word they object to shipping. Any word
# ending in "n't" is one too (checked apart), so "shouldn't", "mustn't", "hasn't" need no row.
NEGATIONS: frozenset[str] = _vocabulary(
    """not no nope nah never dont doesnt didnt wont wouldnt shouldnt cant cannot couldnt isnt arent
    wasnt werent aint mustnt neednt without neither nor hardly"""
)
# Word beginnings that ask to wait, stop or hold back: anywhere in the message, they object ("wait",
# "waiting", "hold on", "hold off", "blocked", "blocker", "paused", "let's stop", "later", "not yet").
HOLDS: tuple[str, ...] = (
    "wait", "hold", "stop", "block", "paus", "halt", "abort", "cancel", "postpon", "defer", "delay",
    "freez", "frozen", "hang", "later", "yet", "veto", "object",
)  # fmt: skip
# Words that, opening a message, answer no ("No.", "nope", "nah, not like this", "not yet").
REFUSALS: frozenset[str] = _vocabulary("no nope nah not never")
_SHIPPING_WORDS = re.compile(r"ship|merge|lgtm|approv|deploy|reject|[✅✔☑✓🔐❌]")
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>")
_ADDRESS = re.compile(r"^(?:(?:hey|hi|ok|okay)\s+)?@?mendbot\b[\s,:;!.-]*")
_WORD = re.compile(r"[a-z0-9']+")
_RUN_REFERENCE = re.compile(r"(?<![\w<])(?:run\s*#?\s*(\d+)|#(\d+))(?!\w)")
_QUESTION_MARKS = frozenset("?¿؟⸮;")  # ";" is where NFKC leaves the Greek question mark
_QUOTE_MARKS = frozenset('"«»„‟‹›「」『』〝〞〟')
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_VARIATION_SELECTORS = (range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0))


class Reading(msgspec.Struct, frozen=True):
    """The verdict on one message: `form` is set exactly when the verdict is approve or reject.

    `reason`: "phrase" (approve, reject); "hold", "negated", "refusal" (object); "code", "quoted",
    "question", "not_whole", "unsure" (unclear); "" (none).
    """

    verdict: Verdict
    form: ApprovalForm | None
    reason: str
    text: str  # the normalised text that was judged

    @property
    def shipping(self) -> bool:
        """True when the message is about approving at all (a decision, an objection, or unclear)."""
        return self.verdict != "none"

    @property
    def holds(self) -> bool:
        """True when the message holds the merge for its author (an objection, or unclear)."""
        return self.verdict in ("object", "unclear")

    def why(self) -> str:
        """Why the message is not a clear yes, in a few words (for replies)."""
        return {
            "code": "it is inside code",
            "quoted": "it is quoted",
            "question": "it is a question",
            "hold": "it asks to wait or stop",
            "negated": "it has a negation in it",
            "refusal": "it says no",
            "not_whole": "it is not the whole message",
            "unsure": "it has a negation in it, and I can't tell whether it objects",
        }.get(self.reason, "it is not a clear yes")

    def reply(self) -> str:
        """For a message that is not a clear decision: why it did not count, and what would."""
        return f"That doesn't count as an approval ({self.why()}). {what_counts()}"


def what_counts() -> str:
    """The rule in one line, for replies (docs/security.md lists the same)."""
    return (
        "What counts, as the whole message replying to the proposal: **ship it** (or `ship`, "
        "`lgtm, merge`, `merge it`, `approve`, ✅); **ship it security** (or 🔐) for a change to "
        "protected paths; **ship it unproven** for a fix without proof; **don't ship** (or `reject`, ❌)"
        " rejects. From an approver, anything else about shipping (a question, `wait`, `not yet`, "
        "`don't merge it yet`…) holds the merge until they approve, or delete or edit that message."
    )


@lru_cache(maxsize=1)
def _confusables() -> dict[str, Any]:
    # Unicode's confusables table costs ~0.25 s and ~7 MB to load: a bot pays for it with the first
    # non-ASCII reply it reads, not at every start.
    from confusable_homoglyphs.confusables import confusables_data

    data: dict[str, Any] = confusables_data
    return data


def _fold_char(char: str) -> str:
    if char.isascii():
        return char
    for glyph in _confusables().get(char, ()):
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
    if text.isascii():
        # Every step but the casefold leaves ASCII as it is (no ASCII character is hidden, folded or
        # changed by NFKC), and ASCII's casefold is its lower case: every message a bot reads passes here.
        return text.lower()
    return normalise_unicode(text)


def normalise_unicode(text: str) -> str:
    """`normalise` step by step, whatever the text."""
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


@lru_cache(maxsize=1)
def _table() -> dict[str, ApprovalForm]:
    """The phrases and emoji normalised, built at the first message read (normalising an emoji
    loads the confusables table)."""
    table: dict[str, ApprovalForm] = {}
    for row in FORMS:
        for phrase in (*row.phrases, *row.emoji):
            table[normalise(phrase)] = row.form
    return table


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


def _objection(words: list[str], shipping: bool) -> str | None:
    """The objecting construction in the words (module docstring), as a reason, or None."""
    if any(word.startswith(HOLDS) for word in words):
        return "hold"
    if words and words[0] in REFUSALS:
        return "refusal"
    negated = any(word in NEGATIONS or word.endswith("n't") for word in words)
    if negated and shipping:
        return "negated"
    return None


def read_approval(text: str) -> Reading:
    """Judge one message against the grammar (see the module docstring)."""
    nfkc = unicodedata.normalize("NFKC", text)
    folded = normalise(text)
    shipping = bool(_SHIPPING_WORDS.search(folded) or _SHIPPING_WORDS.search(re.sub(r"[\W_]+", "", folded)))
    phrase = _phrase(folded)
    words = _WORD.findall(phrase)
    negated = any(word in NEGATIONS or word.endswith("n't") for word in words)

    def reading(verdict: Verdict, reason: str, form: ApprovalForm | None = None) -> Reading:
        return Reading(verdict, form, reason, folded)

    form = _table().get(phrase)
    if form == "reject":
        return reading("reject", "phrase", form)
    objection = _objection(words, shipping)
    if objection is not None:
        return reading("object", objection)
    if not shipping:
        return reading("unclear", "unsure") if negated else reading("none", "")
    if "`" in nfkc or "`" in folded:
        return reading("unclear", "code")
    if _quoted(nfkc, folded):
        return reading("unclear", "quoted")
    if any(char in _QUESTION_MARKS for char in nfkc + folded):
        return reading("unclear", "question")
    if form is not None:
        return reading("approve", "phrase", form)
    return reading("unclear", "not_whole")


def run_references(text: str) -> list[int]:
    """The run ids a message names ("run 7", "run #7", "#7"), in order, each once."""
    found = (int(match.group(1) or match.group(2)) for match in _RUN_REFERENCE.finditer(normalise(text)))
    return list(dict.fromkeys(found))


def reaction_form(emoji: str) -> ApprovalForm | None:
    """The decision a reaction stands for (✅ ✔️ ☑️ approve, 🔐 security form, ❌ reject), or None."""
    form = _table().get(normalise(emoji).strip())
    return form if form is not None and normalise(emoji).strip() in _emoji() else None


@lru_cache(maxsize=1)
def _emoji() -> frozenset[str]:
    return frozenset(normalise(emoji) for row in FORMS for emoji in row.emoji)
