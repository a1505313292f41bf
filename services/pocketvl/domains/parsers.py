"""The model's raw text as a typed answer, per task: ``parse_answer``.

Pure and total: every string gives ("ok", typed answer) or ("unparsed", TextAnswer(raw
text)); nothing raises, because a model that rambles is an expected outcome, not a failed
message. The readers per domain live in ``driving``, ``remote_sensing`` and ``medical``;
this module only picks the reader for the task and assembles the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, assert_never

from pocketvl.contracts.answers import (
    AnyAnswer,
    BDDAnswer,
    BoxesAnswer,
    ChoiceAnswer,
    DriveLMAnswer,
    LabelAnswer,
    TextAnswer,
    TypedAnswer,
    YesNoAnswer,
)
from pocketvl.contracts.tasks import (
    AnyTask,
    BDDTask,
    DriveLMTask,
    MedicalChoiceTask,
    MedicalVqaTask,
    RSCaptionTask,
    RSClassifyTask,
    RSGroundTask,
    RSVqaTask,
)
from pocketvl.domains.driving import read_control_signals, resolve_object_refs
from pocketvl.domains.medical import match_choice, read_option_letter, read_yes_no
from pocketvl.domains.remote_sensing import match_label, read_boxes

ParseStatus = Literal["ok", "unparsed"]


@dataclass(frozen=True)
class ParseContext:
    """What the text alone does not say: the sizes coordinates must be mapped back to.

    ``image_sizes``: (width, height) of each ORIGINAL input image, in request order (RS
    grounding maps onto the first). ``camera_sizes``: DriveLM's original frame size per
    camera name; a camera not listed is taken as nuScenes' 1600x900.
    """

    image_sizes: tuple[tuple[int, int], ...] = ()
    camera_sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)


def parse_answer(
    task: AnyTask, raw_text: str, context: ParseContext
) -> tuple[ParseStatus, TypedAnswer]:
    """("ok", the typed answer for ``task``) or ("unparsed", TextAnswer(text=raw_text))."""
    answer = _read(task, raw_text, context)
    if answer is None:
        return "unparsed", TextAnswer(text=raw_text)
    return "ok", answer


def _read(task: AnyTask, raw_text: str, context: ParseContext) -> AnyAnswer | None:
    match task:
        case DriveLMTask():
            return _drivelm(raw_text, context)
        case BDDTask():
            return _bdd(task, raw_text)
        case RSGroundTask():
            return _boxes(raw_text, context)
        case RSClassifyTask():
            label = match_label(raw_text, task.labels)
            return None if label is None else LabelAnswer(label=label)
        case RSVqaTask() | MedicalVqaTask():
            return _vqa(raw_text)
        case RSCaptionTask():
            return _free_text(raw_text)
        case MedicalChoiceTask():
            picked = match_choice(raw_text, task.options)
            return None if picked is None else ChoiceAnswer(letter=picked[0], option=picked[1])
        case _:
            assert_never(task)


def _drivelm(raw_text: str, context: ParseContext) -> DriveLMAnswer | None:
    # DriveLM answers are free text, so anything non-empty is an answer; the references
    # and the MCQ letter are extras read from it.
    text = raw_text.strip()
    if not text:
        return None
    resolved, objects = resolve_object_refs(text, context.camera_sizes)
    letter = read_option_letter(text)
    return DriveLMAnswer(
        text=resolved, objects=objects, choice=None if letter is None else letter[0]
    )


def _bdd(task: BDDTask, raw_text: str) -> BDDAnswer | None:
    text = raw_text.strip()
    if not text:
        return None
    match task.predict:
        case "action":
            return BDDAnswer(action=text)
        case "justification":
            return BDDAnswer(justification=text)
        case "control":
            signals = read_control_signals(text)
            if signals is None:
                return None
            return BDDAnswer(speed=signals[0], turning_angle=signals[1])
        case _:
            assert_never(task.predict)


def _boxes(raw_text: str, context: ParseContext) -> BoxesAnswer | None:
    # Without the original size a 0-1000 box cannot be put into pixels; the answer's
    # contract promises pixels, so that is unparsed rather than a half answer.
    if not context.image_sizes:
        return None
    boxes = read_boxes(raw_text, context.image_sizes[0])
    return BoxesAnswer(boxes=boxes) if boxes else None


def _vqa(raw_text: str) -> YesNoAnswer | TextAnswer | None:
    value = read_yes_no(raw_text)
    return _free_text(raw_text) if value is None else YesNoAnswer(value=value)


def _free_text(raw_text: str) -> TextAnswer | None:
    text = raw_text.strip()
    return TextAnswer(text=text) if text else None
