"""Typed answers: the ``answer`` field of an answer message, discriminated on ``kind``.

Each domain parser (``pocketvl.domains.parsers``) turns the model's raw text into one of
these. Coordinates are always given twice: in pixels of the ORIGINAL input (what a consumer
draws with) and as the model's own 0-1000 values (what the model actually said), so a
consumer can audit the conversion. When the text cannot be read, the answer is a
``TextAnswer`` holding the raw text and the message's status says ``unparsed``.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, FiniteFloat, TypeAdapter, model_validator

from pocketvl.contracts.common import CameraName, Strict

OptionLetter = Annotated[str, Field(pattern=r"^[A-Z]$")]
NormCoordinate = Annotated[int, Field(ge=0)]


class TextAnswer(Strict):
    """Free text; also what an unparsed answer carries (the raw text, unchanged)."""

    kind: Literal["text"] = "text"
    text: str


class ObjectRef(Strict):
    """One ``<cN,CAM_X,[x,y]>`` object reference of a DriveLM answer."""

    tag: str = Field(description='object identifier, e.g. "c1"')
    camera: CameraName
    x: FiniteFloat = Field(description="pixels in the camera's original frame, rounded to 0.1")
    y: FiniteFloat = Field(description="pixels in the camera's original frame, rounded to 0.1")
    x_norm: FiniteFloat = Field(description="the model's 0-1000 value over the 2688x896 stitch")
    y_norm: FiniteFloat = Field(description="the model's 0-1000 value over the 2688x896 stitch")


class DriveLMAnswer(Strict):
    """DriveLM free text with its object references resolved to camera pixels."""

    kind: Literal["drivelm"] = "drivelm"
    text: str = Field(description="the answer, references rewritten to DriveLM's pixel form")
    objects: list[ObjectRef] = Field(default_factory=list)
    choice: OptionLetter | None = Field(
        default=None, description="the option letter when the whole answer is an MCQ letter"
    )


class Quantity(Strict):
    value: FiniteFloat
    unit: Literal["m/s", "deg"]


class BDDAnswer(Strict):
    """One BDD-X aspect; only the field the task asked for is set."""

    kind: Literal["bdd"] = "bdd"
    action: str | None = None
    justification: str | None = None
    speed: Quantity | None = None
    turning_angle: Quantity | None = None

    @model_validator(mode="after")
    def _units_match_fields(self) -> BDDAnswer:
        # One Quantity type serves both signals; the field decides which unit is right.
        if self.speed is not None and self.speed.unit != "m/s":
            raise ValueError("speed must be in m/s")
        if self.turning_angle is not None and self.turning_angle.unit != "deg":
            raise ValueError("turning_angle must be in deg")
        return self


class Box(Strict):
    """An axis-aligned box in pixels of the ORIGINAL image, plus the model's 0-1000 values."""

    label: str | None = None
    x1: FiniteFloat = Field(ge=0)
    y1: FiniteFloat = Field(ge=0)
    x2: FiniteFloat = Field(ge=0)
    y2: FiniteFloat = Field(ge=0)
    norm: tuple[NormCoordinate, NormCoordinate, NormCoordinate, NormCoordinate]

    @model_validator(mode="after")
    def _corners_ordered(self) -> Box:
        if self.x1 > self.x2 or self.y1 > self.y2:
            raise ValueError("box corners must satisfy x1 <= x2 and y1 <= y2")
        return self


class BoxesAnswer(Strict):
    kind: Literal["boxes"] = "boxes"
    boxes: list[Box]


class LabelAnswer(Strict):
    """Scene classification: exactly one of the request's labels, spelt as requested."""

    kind: Literal["label"] = "label"
    label: str


class YesNoAnswer(Strict):
    kind: Literal["yes_no"] = "yes_no"
    value: bool


class ChoiceAnswer(Strict):
    """Multiple choice: the letter and the request's option text it stands for."""

    kind: Literal["choice"] = "choice"
    letter: OptionLetter
    option: str


TypedAnswer = Annotated[
    TextAnswer | DriveLMAnswer | BDDAnswer | BoxesAnswer | LabelAnswer | YesNoAnswer | ChoiceAnswer,
    Field(discriminator="kind"),
]
AnyAnswer = (
    TextAnswer | DriveLMAnswer | BDDAnswer | BoxesAnswer | LabelAnswer | YesNoAnswer | ChoiceAnswer
)
TYPED_ANSWER_ADAPTER: Final[TypeAdapter[AnyAnswer]] = TypeAdapter(TypedAnswer)
