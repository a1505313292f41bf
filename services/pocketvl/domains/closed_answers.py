"""Reading closed answers: yes/no and multiple-choice letters.

Medical questions are where these forms come from (VLMEvalKit-style MCQ), but the
readers are shared: DriveLM's behaviour questions are MCQs too and remote-sensing VQA
answers yes/no. Pure functions over the model's text; they never raise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from string import ascii_uppercase

from pocketvl.contracts.answers import TextAnswer, YesNoAnswer

# Only a leading word counts; "There is no evidence of ..." stays free text. "no" must
# also end its clause, because it is a determiner too: "No fracture is seen" keeps its
# words as text rather than being flattened to a bare no.
_YES = re.compile(r"yes\b", re.IGNORECASE)
_NO = re.compile(r"no\s*(?:[.,!;:]|$)", re.IGNORECASE)

# "The answer is", "Answer:", "The correct option is", ... before the letter; the
# MME-RealWorld scorer strips such prefixes the same way.
_ANSWER_PREFIX = re.compile(
    r"^(?:the\s+)?(?:(?:correct|best|right|final)\s+)?(?:answer|option|choice)(?:\s+is)?\s*:?\s*",
    re.IGNORECASE,
)
# "B", "B.", "B)", "B:", "(B)", optionally followed by the option's text. Upper case only:
# a lower-case "a" is far more often the article than an option.
_LETTER = re.compile(
    r"(?:\((?P<paren>[A-Z])\)|(?P<bare>[A-Z])(?=[.:)]|$))[.:)]?(?P<rest>.*)", re.DOTALL
)
# Decoration a chat model wraps a short answer in (markdown bold, quotes).
_WRAPPING = " \t\r\n\"'*`"


def read_yes_no(text: str) -> bool | None:
    """True/False when the answer opens with the word yes/no, else None."""
    opening = text.lstrip(_WRAPPING)
    if _YES.match(opening):
        return True
    if _NO.match(opening.rstrip(_WRAPPING)):
        return False
    return None


def read_option_letter(text: str) -> tuple[str, str] | None:
    """(letter, option text written after it) when the whole answer is an option letter.

    Accepts "A", "A.", "(C)", "Answer: B", "The answer is D", and "D. The ego vehicle is
    going straight." (letter then its option's text). "A car is ahead." is not a letter
    answer: a bare letter must be followed by punctuation or the end, and text after it
    must be set off by a space ("A.I." is not option A).
    """
    unwrapped = text.strip(_WRAPPING)
    match = _LETTER.fullmatch(_ANSWER_PREFIX.sub("", unwrapped, count=1))
    if match is None:
        return None
    rest = match["rest"]
    if rest.strip(" .") and not rest[0].isspace():
        return None
    return match["paren"] or match["bare"], rest.strip(" .")


def match_choice(text: str, options: Sequence[str]) -> tuple[str, str] | None:
    """(letter, option) the answer picks from ``options`` (A, B, ... in order), or None.

    The letter forms of ``read_option_letter`` and the option's own text (compared
    case-folded, without punctuation) are accepted. None for a letter past the last option,
    a letter whose trailing text names a different option, or text matching several options.
    """
    picked = read_option_letter(text)
    if picked is not None:
        letter, trailing = picked
        index = ascii_uppercase.index(letter)
        if index >= len(options):
            return None
        named = _options_named(trailing, options) if trailing else []
        if named and index not in named:
            return None  # "B. <text of option C>": the model contradicts itself
        return letter, options[index]
    named = _options_named(text, options)
    if len(named) != 1:
        return None
    return ascii_uppercase[named[0]], options[named[0]]


def _options_named(text: str, options: Sequence[str]) -> list[int]:
    key = _normalise(text)
    if not key:
        return []
    return [index for index, option in enumerate(options) if _normalise(option) == key]


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


def free_text(raw_text: str) -> TextAnswer | None:
    """The stripped text as an answer; None (unparsed) when nothing is left."""
    text = raw_text.strip()
    return TextAnswer(text=text) if text else None


def short_answer(raw_text: str) -> YesNoAnswer | TextAnswer | None:
    """Open VQA: yes/no when the answer opens with it, else free text."""
    value = read_yes_no(raw_text)
    return free_text(raw_text) if value is None else YesNoAnswer(value=value)
