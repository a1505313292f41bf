"""Reading remote-sensing answers: grounding boxes and scene labels.

Pure functions over the model's text; they never raise. The dispatcher in
``pocketvl.domains.parsers`` builds the typed answers from what these return.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from pocketvl.contracts.answers import Box

NORM_SCALE = 1000  # InternVL writes boxes as integers normalised to 0-1000 (facts 3.3)

# <ref>label</ref><box>[[x1, y1, x2, y2]]</box>, the ref being optional. A box may hold
# several quads ([[..],[..]]); each is a box of the same label.
_TAGGED_BOX = re.compile(
    r"(?:<ref>(?P<label>[^<]*)</ref>\s*)?<box>(?P<body>[^<]*)</box>", re.IGNORECASE
)
# A bare [[...]] list outside <box> tags: the DIOR-RSVG scorer reads the first such list
# from the text whatever surrounds it, so an answer that drops the tags is still a box.
_BARE_LIST = re.compile(r"\[\s*\[[^<>\[\]]*\](?:\s*,\s*\[[^<>\[\]]*\])*\s*\]")
# Digits only: the format is non-negative integers; a float or signed quad is not a box.
# Six digits at most keeps a runaway number from becoming a huge int.
_QUAD = re.compile(r"\[\s*(\d{1,6})\s*,\s*(\d{1,6})\s*,\s*(\d{1,6})\s*,\s*(\d{1,6})\s*\]")

# A label is looked for inside an answer only while the answer is short: in a long
# sentence a class name can appear without being the answer ("unlike a farmland, ...").
SHORT_ANSWER_WORDS = 12


def read_boxes(text: str, image_size: tuple[int, int]) -> list[Box]:
    """Every box in ``text``, in pixels of an original image of ``image_size`` (width, height).

    x_px = x / 1000 * width and y_px = y / 1000 * height, clamped to the image (values
    above 1000 are kept in ``norm`` but land on the border, as the DIOR-RSVG scorer clamps
    them), corners swapped when given reversed, rounded to 0.1 px. Boxes come in the order
    written: tagged ones first, then bare lists outside tags.
    """
    width, height = image_size
    if width <= 0 or height <= 0:
        return []
    return [_to_pixels(label, quad, width, height) for label, quad in _labelled_quads(text)]


def _labelled_quads(text: str) -> Iterator[tuple[str | None, tuple[int, int, int, int]]]:
    for match in _TAGGED_BOX.finditer(text):
        label = (match["label"] or "").strip() or None
        for quad in _QUAD.finditer(match["body"]):
            yield label, _ints(quad)
    untagged = _TAGGED_BOX.sub(" ", text)  # so a tagged quad is never read twice
    for bare in _BARE_LIST.finditer(untagged):
        for quad in _QUAD.finditer(bare.group(0)):
            yield None, _ints(quad)


def _ints(quad: re.Match[str]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (int(value) for value in quad.groups())
    return x1, y1, x2, y2


def _to_pixels(label: str | None, norm: tuple[int, int, int, int], width: int, height: int) -> Box:
    x1, x2 = sorted((_scale(norm[0], width), _scale(norm[2], width)))
    y1, y2 = sorted((_scale(norm[1], height), _scale(norm[3], height)))
    return Box(label=label, x1=x1, y1=y1, x2=x2, y2=y2, norm=norm)


def _scale(value: int, extent: int) -> float:
    return round(min(value / NORM_SCALE * extent, float(extent)), 1)


def normalise_words(text: str) -> str:
    """Case-folded words without punctuation, single-spaced, each stripped of a final "s".

    Dropping the final "s" makes singular and plural forms compare equal ("storage tanks"
    vs "storage tank"); both sides go through it, so it never has to be a correct stemmer.
    """
    words = re.sub(r"[\W_]+", " ", text.casefold()).split()
    return " ".join(word[:-1] if len(word) > 1 and word.endswith("s") else word for word in words)


def match_label(text: str, labels: Sequence[str]) -> str | None:
    """The one label of ``labels`` the answer names, or None when it names none or several.

    An answer equal to a label (after ``normalise_words``) wins outright. Otherwise, in a
    short answer, labels appearing as whole words count, and a label inside another
    matching label ("forest" in "sparse forest") gives way to the longer one.
    """
    answer = normalise_words(text)
    keyed = [(normalise_words(label), label) for label in labels]
    keyed = [(key, label) for key, label in keyed if key]  # "!!!" would match anything
    exact = {label for key, label in keyed if key == answer}
    if exact:
        return exact.pop() if len(exact) == 1 else None
    if not answer or len(answer.split()) > SHORT_ANSWER_WORDS:
        return None
    # Pairs, not a dict: two labels with one key ("pond", "ponds") must stay ambiguous.
    found = [(key, label) for key, label in keyed if _has_phrase(answer, key)]
    longest = {
        label
        for key, label in found
        if not any(other != key and _has_phrase(other, key) for other, _ in found)
    }
    return longest.pop() if len(longest) == 1 else None


def _has_phrase(text: str, phrase: str) -> bool:
    return f" {phrase} " in f" {text} "
