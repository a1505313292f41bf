"""Request, answer and DLQ messages (DESIGN.md section 3)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, TypeAdapter, model_validator

from pocketvl.contracts.answers import TypedAnswer
from pocketvl.contracts.common import (
    DRIVELM_CAMERAS,
    VIDEO_MEDIA_TYPES,
    DecodeParams,
    EventId,
    GenerationParams,
    Image,
    ImageReference,
    InlineImage,
    ModelSize,
    Strict,
)
from pocketvl.contracts.tasks import AnyTask, DrivingTask, MedicalTask, RemoteSensingTask


class _RequestBase(Strict):
    schema_version: Literal["1"] = "1"
    event_id: EventId = Field(description="unique per event; equals the ce_id header")
    images: list[Image] = Field(
        min_length=1, max_length=16, description="images, DICOM, or (driving/bdd) one video"
    )
    decode: DecodeParams = Field(default_factory=DecodeParams)
    model_size: ModelSize | None = Field(default=None, description="prefer this checkpoint size")
    generation: GenerationParams = Field(default_factory=GenerationParams)
    deadline: datetime | None = Field(default=None, description="answer is useless after this")


class DrivingRequest(_RequestBase):
    """drivelm: the six nuScenes cameras, each named (CAM_FRONT, ...); bdd: a clip, as one
    video or as its frames in order."""

    domain: Literal["driving"] = "driving"
    task: DrivingTask

    @model_validator(mode="after")
    def _inputs_fit_the_task(self) -> DrivingRequest:
        videos = [i for i in self.images if i.media_type in VIDEO_MEDIA_TYPES]
        if self.task.type == "drivelm":
            names = sorted(i.name or "" for i in self.images)
            if names != sorted(DRIVELM_CAMERAS) or videos:
                raise ValueError(
                    f"drivelm needs exactly six still images named {', '.join(DRIVELM_CAMERAS)}"
                )
        elif videos and len(self.images) != 1:
            raise ValueError("bdd takes one video, or frames as images, not both")
        return self


def _no_video(images: list[InlineImage | ImageReference], task: str) -> None:
    if any(i.media_type in VIDEO_MEDIA_TYPES for i in images):
        raise ValueError(f"{task} takes images, not video")


class RemoteSensingRequest(_RequestBase):
    domain: Literal["remote_sensing"] = "remote_sensing"
    task: RemoteSensingTask

    @model_validator(mode="after")
    def _one_image(self) -> RemoteSensingRequest:
        _no_video(self.images, self.task.type)
        if len(self.images) != 1:
            raise ValueError("remote sensing tasks take exactly one image")
        return self


class MedicalRequest(_RequestBase):
    domain: Literal["medical"] = "medical"
    task: MedicalTask

    @model_validator(mode="after")
    def _stills_only(self) -> MedicalRequest:
        _no_video(self.images, self.task.type)
        return self


Request = Annotated[
    DrivingRequest | RemoteSensingRequest | MedicalRequest, Field(discriminator="domain")
]
REQUEST_ADAPTER: TypeAdapter[DrivingRequest | RemoteSensingRequest | MedicalRequest] = TypeAdapter(
    Request
)
AnyRequest = DrivingRequest | RemoteSensingRequest | MedicalRequest


class ModelIdentity(Strict):
    checkpoint: str
    triton_model: str
    version: str


class TokenCounts(Strict):
    prompt: int = Field(ge=0)
    generated: int = Field(ge=0)


class Timings(Strict):
    total_ms: float = Field(ge=0)
    infer_ms: float | None = Field(default=None, ge=0)


class Answer(Strict):
    schema_version: Literal["1"] = "1"
    event_id: EventId = Field(description="the request's event_id")
    domain: Literal["driving", "remote_sensing", "medical"]
    task: AnyTask
    model: ModelIdentity
    status: Literal["ok", "unparsed"]
    answer: TypedAnswer = Field(description="typed by kind; text when status is unparsed")
    raw_text: str
    cache: Literal["hit", "miss"]
    timings: Timings
    tokens: TokenCounts
    produced_at: datetime


# "worker": a failure outside the pipeline's stages (the loop's own guard).
DlqStage = Literal[
    "deserialize", "validate", "route", "fetch", "infer", "postprocess", "produce", "worker"
]


class DlqHeaders(Strict):
    """Headers of a DLQ record; the record's key and value are the original bytes, unchanged."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True
    )

    stage: DlqStage = Field(alias="dlq.stage")
    reason: str = Field(
        alias="dlq.reason",
        pattern=r"^[a-z][a-z0-9_]*$",
        max_length=64,
        description="low-cardinality code; the README lists each one and when it happens",
    )
    exception_message: str = Field(alias="dlq.exception.message", max_length=1024)
    original_topic: str = Field(alias="dlq.original.topic")
    original_partition: int = Field(alias="dlq.original.partition", ge=0)
    original_offset: int = Field(alias="dlq.original.offset", ge=0)
    attempts: int = Field(alias="dlq.attempts", ge=1)
    retryable: bool = Field(alias="dlq.retryable")
    failed_at: datetime = Field(alias="dlq.failed_at")
