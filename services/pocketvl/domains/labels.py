"""Evaluation labels: the expected answer of one labelled request, one model per shape.

Each task's spec names its label model; several tasks share one (every open VQA task is
scored on ``AnswerLabel``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from pocketvl.contracts.common import Strict

# Numbers must be JSON numbers: lax pydantic would turn the string "1.5" into a float.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1)]


class CameraObject(Strict):
    camera: Text
    x: Number
    y: Number


class DriveLMLabel(Strict):
    answer: str
    choice: Annotated[str, Field(pattern=r"^[A-Z]$")] | None = None
    objects: list[CameraObject] = Field(default_factory=list)


class BDDLabel(Strict):
    action: str | None = None
    justification: str | None = None
    speed: Number | None = None
    turning_angle: Number | None = None

    @model_validator(mode="after")
    def _something_to_score(self) -> BDDLabel:
        if all(
            v is None for v in (self.action, self.justification, self.speed, self.turning_angle)
        ):
            raise ValueError("give at least one of action, justification, speed, turning_angle")
        return self


class AnswerLabel(Strict):
    answer: str


class ClassLabel(Strict):
    label: Text


class GroundLabel(Strict):
    boxes: list[tuple[Number, Number, Number, Number]] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered_corners(self) -> GroundLabel:
        for x1, y1, x2, y2 in self.boxes:
            if x2 < x1 or y2 < y1:
                raise ValueError("boxes are [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
        return self


class CaptionLabel(Strict):
    caption: str


class LetterLabel(Strict):
    letter: Annotated[str, Field(pattern=r"^[A-Z]$")]


Label = (
    DriveLMLabel | BDDLabel | AnswerLabel | ClassLabel | GroundLabel | CaptionLabel | LetterLabel
)
