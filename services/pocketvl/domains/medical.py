"""The medical domain: open and multiple-choice questions about photographs, scans and DICOM.

Its answers are read by ``pocketvl.domains.closed_answers`` (yes/no, option letters).
"""

from __future__ import annotations

from string import ascii_uppercase
from typing import Annotated, Any, Literal

from pydantic import Field

from pocketvl.contracts.answers import ChoiceAnswer
from pocketvl.contracts.tasks import Question, TaskBase, UserText
from pocketvl.domains.closed_answers import match_choice, short_answer
from pocketvl.domains.labels import AnswerLabel, LetterLabel
from pocketvl.domains.spec import InputRule, ParseContext, TaskDocs, TaskSpec


class MedicalVqaTask(TaskBase):
    type: Literal["vqa"] = "vqa"
    question: Question


class MedicalChoiceTask(TaskBase):
    type: Literal["choice"] = "choice"
    question: Question
    options: list[Annotated[UserText, Field(min_length=1, max_length=500)]] = Field(
        min_length=2, max_length=26
    )


def lettered(options: list[str]) -> str:
    return "\n".join(
        f"{letter}. {text}" for letter, text in zip(ascii_uppercase, options, strict=False)
    )


def _choice_prompt(task: MedicalChoiceTask) -> str:
    return (
        f"{task.question}\n{lettered(task.options)}\n"
        "Answer with the option's letter from the given choices directly."
    )


def parse_choice(
    task: MedicalChoiceTask, raw_text: str, context: ParseContext
) -> ChoiceAnswer | None:
    picked = match_choice(raw_text, task.options)
    return None if picked is None else ChoiceAnswer(letter=picked[0], option=picked[1])


def _letter_is_an_option(task: MedicalChoiceTask, label: LetterLabel) -> None:
    allowed = ascii_uppercase[: len(task.options)]
    if label.letter not in allowed:
        raise ValueError(f"label.letter {label.letter!r} is not one of {', '.join(allowed)}")


_STILLS = InputRule(video="never")
_STILLS_DOC = (
    "JPEG/PNG or DICOM (rescale slope/intercept, window centre/width or `decode.dicom_window`, "
    "MONOCHROME1 inverted, `decode.dicom_frame` of a multi-frame)"
)
VQA = TaskSpec(
    domain="medical",
    model=MedicalVqaTask,
    summary="an open question about the image(s)",
    inputs=_STILLS,
    layout="as_decoded",
    prompt=lambda task: task.question,
    parse=lambda task, text, context: short_answer(text),
    answer_kinds=("yes_no", "text"),
    checkpoint="Medical",
    label=AnswerLabel,
    metric="exact_match",
    published_answer="Yes",
    docs=TaskDocs("`question`", _STILLS_DOC, "the question", "`yes_no` or `text`"),
)
CHOICE = TaskSpec(
    domain="medical",
    model=MedicalChoiceTask,
    summary="a multiple-choice question: options A, B, ... in order",
    inputs=_STILLS,
    layout="as_decoded",
    prompt=_choice_prompt,
    parse=parse_choice,
    answer_kinds=("choice",),
    checkpoint="Medical",
    label=LetterLabel,
    metric="accuracy",
    published_answer="B",
    docs=TaskDocs(
        "`question`, `options`",
        _STILLS_DOC,
        "question + lettered options + `Answer with the option's letter…`",
        "`choice` (letter + option text)",
    ),
    check_label=_letter_is_an_option,
)
SPECS: tuple[TaskSpec[Any], ...] = (VQA, CHOICE)
