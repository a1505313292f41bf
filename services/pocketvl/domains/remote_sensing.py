"""The remote-sensing domain: VQA, scene classification, grounding and captioning of one
aerial or satellite image.

Declares the four tasks (request model, input rules, prompt, parser, evaluation) and the
pure readers of their answers: grounding boxes and scene labels. Readers never raise;
text they cannot read makes the answer unparsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from pocketvl.contracts.answers import Box, BoxesAnswer, LabelAnswer
from pocketvl.contracts.tasks import Question, TaskBase, UserText
from pocketvl.domains.closed_answers import free_text, short_answer
from pocketvl.domains.labels import AnswerLabel, CaptionLabel, ClassLabel, GroundLabel
from pocketvl.domains.spec import InputRule, ParseContext, TaskDocs, TaskSpec

NORM_SCALE = 1000  # InternVL writes boxes as integers normalised to 0-1000
SHORT_ANSWER = "Answer the question using a single word or phrase."
ONE_IMAGE = InputRule(min_images=1, max_images=1)


class RSVqaTask(TaskBase):
    type: Literal["vqa"] = "vqa"
    question: Question


class RSClassifyTask(TaskBase):
    type: Literal["classify"] = "classify"
    labels: list[Annotated[UserText, Field(min_length=1, max_length=100)]] = Field(
        min_length=2, max_length=200
    )


class RSGroundTask(TaskBase):
    type: Literal["ground"] = "ground"
    expression: Annotated[UserText, Field(min_length=1, max_length=500)]


class RSCaptionTask(TaskBase):
    type: Literal["caption"] = "caption"


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


def parse_boxes(task: RSGroundTask, raw_text: str, context: ParseContext) -> BoxesAnswer | None:
    # Without the original size a 0-1000 box cannot be put into pixels; the answer's
    # contract promises pixels, so that is unparsed rather than a half answer.
    if not context.image_sizes:
        return None
    boxes = read_boxes(raw_text, context.image_sizes[0])
    return BoxesAnswer(boxes=boxes) if boxes else None


def parse_label(task: RSClassifyTask, raw_text: str, context: ParseContext) -> LabelAnswer | None:
    label = match_label(raw_text, task.labels)
    return None if label is None else LabelAnswer(label=label)


def _label_is_offered(task: RSClassifyTask, label: ClassLabel) -> None:
    if label.label not in task.labels:
        raise ValueError(f"label.label {label.label!r} is not one of the request's labels")


def _classify_prompt(task: RSClassifyTask) -> str:
    classes = ", ".join(task.labels)
    return (
        f"Classify the image within one of the given classes: {classes}. "
        "Answer with one word or short phrase."
    )


_ONE_IMAGE_DOC = (
    "one image: JPEG, PNG, WebP or TIFF/GeoTIFF (any bands and bit depth: `decode.bands` "
    "picks R,G,B, `decode.stretch_percentiles` stretches to 8 bits)"
)
VQA = TaskSpec(
    domain="remote_sensing",
    model=RSVqaTask,
    summary="a short-answer question about the image",
    inputs=ONE_IMAGE,
    layout="as_decoded",
    prompt=lambda task: f"{task.question}\n{SHORT_ANSWER}",
    parse=lambda task, text, context: short_answer(text),
    answer_kinds=("yes_no", "text"),
    checkpoint="RS",
    label=AnswerLabel,
    metric="exact_match",
    published_answer="Yes",
    docs=TaskDocs(
        "`question`",
        _ONE_IMAGE_DOC,
        "`…\\nAnswer the question using a single word or phrase.`",
        "`yes_no` or `text`",
    ),
)
CLASSIFY = TaskSpec(
    domain="remote_sensing",
    model=RSClassifyTask,
    summary="scene classification into one of the request's labels",
    inputs=ONE_IMAGE,
    layout="as_decoded",
    prompt=_classify_prompt,
    parse=parse_label,
    answer_kinds=("label",),
    checkpoint="RS",
    label=ClassLabel,
    metric="accuracy",
    published_answer="River",
    docs=TaskDocs(
        "`labels`",
        _ONE_IMAGE_DOC,
        "`Classify the image within one of the given classes: …`",
        "`label` (one of the request's labels)",
    ),
    check_label=_label_is_offered,
)
GROUND = TaskSpec(
    domain="remote_sensing",
    model=RSGroundTask,
    summary="boxes around what the expression refers to",
    inputs=ONE_IMAGE,
    layout="as_decoded",
    prompt=lambda task: f"Detect <ref>{task.expression}</ref>",
    parse=parse_boxes,
    answer_kinds=("boxes",),
    checkpoint="RS",
    label=GroundLabel,
    metric="grounding",
    published_answer="<ref>the river</ref><box>[[0, 300, 1000, 420]]</box>",
    docs=TaskDocs(
        "`expression`",
        _ONE_IMAGE_DOC,
        "`Detect <ref>…</ref>`",
        "`boxes` (pixels in the ORIGINAL image, plus the model's 0–1000 values)",
    ),
)
CAPTION = TaskSpec(
    domain="remote_sensing",
    model=RSCaptionTask,
    summary="a detailed description of the image",
    inputs=ONE_IMAGE,
    layout="as_decoded",
    prompt=lambda task: "Describe the image in detail.",
    parse=lambda task, text, context: free_text(text),
    answer_kinds=("text",),
    checkpoint="RS",
    label=CaptionLabel,
    metric="exact_match",
    published_answer="A river runs between farmland fields.",
    docs=TaskDocs("none", _ONE_IMAGE_DOC, "`Describe the image in detail.`", "`text`"),
)
SPECS: tuple[TaskSpec[Any], ...] = (VQA, CLASSIFY, GROUND, CAPTION)
