"""Task types per domain: discriminated on ``type``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from pocketvl.contracts.common import Strict

# Markup that only the service may put into a prompt: a user string carrying it could
# desynchronise image features from their placeholders or forge conversation turns.
RESERVED_MARKUP = ("<image>", "<img>", "</img>", "<IMG_CONTEXT>", "<|", "|>")


def _no_reserved_markup(text: str) -> str:
    for markup in RESERVED_MARKUP:
        if markup in text:
            raise ValueError(f"text must not contain the reserved markup {markup!r}")
    return text


UserText = Annotated[str, AfterValidator(_no_reserved_markup)]
Question = Annotated[UserText, Field(min_length=1, max_length=4000)]


class DriveLMTask(Strict):
    """DriveLM graph VQA (perception, prediction, planning, behaviour) over the six cameras."""

    type: Literal["drivelm"] = "drivelm"
    question: Question


class BDDTask(Strict):
    """BDD-X style clip understanding: what the ego vehicle does, why, and its control signals."""

    type: Literal["bdd"] = "bdd"
    predict: Literal["action", "justification", "control"] = "action"


class RSVqaTask(Strict):
    type: Literal["vqa"] = "vqa"
    question: Question


class RSClassifyTask(Strict):
    type: Literal["classify"] = "classify"
    labels: list[Annotated[UserText, Field(min_length=1, max_length=100)]] = Field(
        min_length=2, max_length=200
    )


class RSGroundTask(Strict):
    type: Literal["ground"] = "ground"
    expression: Annotated[UserText, Field(min_length=1, max_length=500)]


class RSCaptionTask(Strict):
    type: Literal["caption"] = "caption"


class MedicalVqaTask(Strict):
    type: Literal["vqa"] = "vqa"
    question: Question


class MedicalChoiceTask(Strict):
    type: Literal["choice"] = "choice"
    question: Question
    options: list[Annotated[UserText, Field(min_length=1, max_length=500)]] = Field(
        min_length=2, max_length=26
    )


DrivingTask = Annotated[DriveLMTask | BDDTask, Field(discriminator="type")]
RemoteSensingTask = Annotated[
    RSVqaTask | RSClassifyTask | RSGroundTask | RSCaptionTask, Field(discriminator="type")
]
MedicalTask = Annotated[MedicalVqaTask | MedicalChoiceTask, Field(discriminator="type")]
AnyTask = (
    DriveLMTask
    | BDDTask
    | RSVqaTask
    | RSClassifyTask
    | RSGroundTask
    | RSCaptionTask
    | MedicalVqaTask
    | MedicalChoiceTask
)
