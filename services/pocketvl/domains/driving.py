"""The driving domain: DriveLM graph VQA over six cameras, BDD-X clip understanding.

Declares both tasks (request model, input rules, prompt, parser, evaluation) and the pure
readers of their answers: DriveLM object references and BDD-X control signals. Readers
never raise; text they cannot read makes the answer unparsed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal, TypeGuard, assert_never, get_args

from pocketvl.contracts.answers import BDDAnswer, DriveLMAnswer, ObjectRef, Quantity
from pocketvl.contracts.common import DRIVELM_CAMERAS, CameraName
from pocketvl.contracts.tasks import Question, TaskBase
from pocketvl.domains.closed_answers import read_option_letter
from pocketvl.domains.labels import BDDLabel, DriveLMLabel
from pocketvl.domains.spec import InputRule, ParseContext, TaskDocs, TaskSpec
from pocketvl.vision.stitch import CAMERA_SIZE, stitched_to_camera


class DriveLMTask(TaskBase):
    """DriveLM graph VQA (perception, prediction, planning, behaviour) over the six cameras."""

    type: Literal["drivelm"] = "drivelm"
    question: Question


class BDDTask(TaskBase):
    """BDD-X style clip understanding: what the ego vehicle does, why, and its control signals."""

    type: Literal["bdd"] = "bdd"
    predict: Literal["action", "justification", "control"] = "action"


BDD_QUESTIONS = {
    "action": "What is the action of the ego car?",
    "justification": "Why does the ego car do this?",
    "control": "Predict the speed and turning angle of the ego car in the next second.",
}

# A decimal number as a model writes it. The exponent is matched on purpose: otherwise
# "1e999" would read as 1 and the rest would be silently dropped; matched, it becomes inf
# and is refused.
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"

# The model's normalised reference <c1,CAM_FRONT,[512.3,420]>: 0-1000 over the 2688x896
# stitch, as DriveLM training data writes it. DriveLM's native un-bracketed
# <c1,CAM_FRONT,1088.3,497.5> is already in pixels and is left alone, as InternVL's own
# DriveLM post-processor leaves it.
_OBJECT_REF = re.compile(
    rf"<\s*(?P<tag>c\w*)\s*,\s*(?P<camera>\w+)\s*,\s*"
    rf"\[\s*(?P<x>{NUMBER})\s*,\s*(?P<y>{NUMBER})\s*\]\s*>"
)

# BDD-X control signals (the exact string the checkpoint was trained on is not published), so the
# keyword is followed by a short gap of words (": ", " is ", " of the car will be ") and
# then the first number. The gap refuses digits, signs and separators so that the number
# read is the one the keyword introduces.
_GAP = r"[^\d+\-.;,\n]{0,30}?"
_SPEED = re.compile(rf"\bspeed\b{_GAP}(?P<value>{NUMBER})", re.IGNORECASE)
_TURN = re.compile(
    rf"\b(?:turn(?:ing)?[\s_-]*angle|steering[\s_-]*angle|turn|course)\b{_GAP}(?P<value>{NUMBER})",
    re.IGNORECASE,
)


def resolve_object_refs(
    text: str, camera_sizes: Mapping[str, tuple[int, int]]
) -> tuple[str, list[ObjectRef]]:
    """Every normalised object reference in ``text``, mapped to its camera's pixels.

    Returns the text with each resolved reference rewritten in DriveLM's native pixel form
    ``<c1,CAM_FRONT,1088.3,497.5>`` (what InternVL's DriveLM evaluation hands to the DriveLM
    scorer), and the references in order. References naming an unknown camera or holding a
    non-finite number are left in the text as written and not listed.
    """
    objects: list[ObjectRef] = []

    def resolve(match: re.Match[str]) -> str:
        ref = _object_ref(match, camera_sizes)
        if ref is None:
            return match.group(0)
        objects.append(ref)
        return f"<{ref.tag},{ref.camera},{ref.x},{ref.y}>"

    return _OBJECT_REF.sub(resolve, text), objects


def _object_ref(
    match: re.Match[str], camera_sizes: Mapping[str, tuple[int, int]]
) -> ObjectRef | None:
    camera = match["camera"]
    x_norm, y_norm = float(match["x"]), float(match["y"])
    if not _is_camera(camera):
        return None  # the model named no camera of the stitch: nothing to map onto
    if not (math.isfinite(x_norm) and math.isfinite(y_norm)):
        return None
    size = camera_sizes.get(camera, CAMERA_SIZE)
    if size[0] <= 0 or size[1] <= 0:
        size = CAMERA_SIZE  # a nonsensical size would map every point onto 0
    point = stitched_to_camera(x_norm, y_norm, camera=camera, camera_size=size)
    return ObjectRef(
        tag=match["tag"],
        camera=camera,
        x=point.x_px,
        y=point.y_px,
        x_norm=x_norm,
        y_norm=y_norm,
    )


def _is_camera(name: str) -> TypeGuard[CameraName]:
    return name in get_args(CameraName)


def read_control_signals(text: str) -> tuple[Quantity, Quantity] | None:
    """(speed in m/s, turning angle in degrees) from BDD-X style text, or None.

    Accepts e.g. "Speed: 5.2; Turn angle: -3.1", "speed 5.2 m/s, turning angle 3.1 degrees",
    "The speed is 2.35 and the turning angle is 0.00". The first number after each keyword
    counts; a missing or non-finite number (nan, 1e999) makes the whole reading None, since
    half a control prediction is not an answer to the question asked.
    """
    speed, angle = _first_number(_SPEED, text), _first_number(_TURN, text)
    if speed is None or angle is None:
        return None
    return Quantity(value=speed, unit="m/s"), Quantity(value=angle, unit="deg")


def _first_number(pattern: re.Pattern[str], text: str) -> float | None:
    match = pattern.search(text)
    if match is None:
        return None
    value = float(match["value"])
    return value if math.isfinite(value) else None


def parse_drivelm(task: DriveLMTask, raw_text: str, context: ParseContext) -> DriveLMAnswer | None:
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


def parse_bdd(task: BDDTask, raw_text: str, context: ParseContext) -> BDDAnswer | None:
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


DRIVELM = TaskSpec(
    domain="driving",
    model=DriveLMTask,
    summary="DriveLM question over the six nuScenes cameras",
    inputs=InputRule(min_images=6, max_images=6, names=DRIVELM_CAMERAS),
    layout="drivelm_stitch",
    prompt=lambda task: task.question,
    parse=parse_drivelm,
    answer_kinds=("drivelm",),
    checkpoint="DriveLM",
    label=DriveLMLabel,
    metric="drivelm",
    published_answer=(
        "A car <c1,CAM_FRONT,[480,300]> and a pedestrian <c2,CAM_BACK_LEFT,[150,720]>."
    ),
    docs=TaskDocs(
        fields="`question`",
        inputs="six stills named " + ", ".join(f"`{name}`" for name in DRIVELM_CAMERAS),
        sent_as=(
            "one 2688×896 stitch, 896×448 per camera, names drawn in magenta "
            "DejaVuSans-Bold 50 (as in training)"
        ),
        answer=(
            "`drivelm`: text with `<cN,CAM,[x,y]>` refs rewritten to camera pixels, `objects` "
            "(camera, x, y in that camera's original resolution, plus the model's 0–1000 "
            "values), `choice` letter for MCQ answers"
        ),
    ),
)
BDD = TaskSpec(
    domain="driving",
    model=BDDTask,
    summary="BDD-X: the ego car's action, its justification, or its speed and turning angle",
    inputs=InputRule(video="alone"),
    layout="video_frames",
    prompt=lambda task: BDD_QUESTIONS[task.predict],
    parse=parse_bdd,
    answer_kinds=("bdd",),
    checkpoint="BDD",
    label=BDDLabel,
    metric="bdd",
    published_answer="Speed: 5.2; Turn angle: -3.1",
    docs=TaskDocs(
        fields="`predict`: `action` \\| `justification` \\| `control`",
        inputs=(
            "one video (mp4/webm/mov, `decode.video_frames` sampled uniformly) or frames as "
            "stills, in order"
        ),
        sent_as="`Frame1: <image>\\nFrame2: <image>…`, one tile per frame",
        answer=(
            "`bdd`: `action`, `justification`, `speed` {value, m/s}, `turning_angle` {value, deg}"
        ),
    ),
)
SPECS: tuple[TaskSpec[Any], ...] = (DRIVELM, BDD)
