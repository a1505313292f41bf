"""Request, answer and DLQ messages. Request and answer models are built from the task
registry, so a task declared there is part of every schema."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, model_validator

from pocketvl.contracts.answers import TypedAnswer
from pocketvl.contracts.common import (
    DecodeParams,
    EventId,
    GenerationParams,
    Image,
    ModelSize,
    Strict,
)
from pocketvl.contracts.tasks import TaskBase
from pocketvl.domains.registry import REGISTRY, Registry
from pocketvl.domains.spec import InputRule


class RequestBase(Strict):
    """Fields every request has; each domain's model (built from the task registry) adds
    ``domain`` as a Literal and ``task`` as the union of its tasks, discriminated on
    ``type``, and checks the images against the task's input rule."""

    # Filled in per domain model: task model -> its input rule.
    input_rules: ClassVar[dict[type[TaskBase], InputRule]] = {}

    schema_version: Literal["1"] = "1"
    event_id: EventId = Field(description="unique per event; equals the ce_id header")
    images: list[Image] = Field(
        min_length=1, max_length=16, description="images, DICOM, or (driving/bdd) one video"
    )
    decode: DecodeParams = Field(default_factory=DecodeParams)
    model_size: ModelSize | None = Field(default=None, description="prefer this checkpoint size")
    generation: GenerationParams = Field(default_factory=GenerationParams)
    deadline: datetime | None = Field(default=None, description="answer is useless after this")
    domain: str
    task: TaskBase

    @model_validator(mode="after")
    def _inputs_fit_the_task(self) -> RequestBase:
        rule = self.input_rules.get(type(self.task))
        problem = rule.problem(self.task.type, self.images) if rule else None
        if problem:
            raise ValueError(problem)
        return self


def _one_of(models: Sequence[type[BaseModel]], discriminator: str) -> Any:
    """The union of ``models``, discriminated when there are several."""
    if len(models) == 1:
        return models[0]
    return Annotated[_any_of(models), Field(discriminator=discriminator)]


def _any_of(models: Sequence[type[BaseModel]]) -> Any:
    return Union[tuple(models)]  # noqa: UP007


def _literal(values: tuple[str, ...]) -> Any:
    return Literal[values]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def request_models(registry: Registry) -> dict[str, type[RequestBase]]:
    """One request model per domain (``DrivingRequest``, ...), from the registry."""
    models: dict[str, type[RequestBase]] = {}
    for domain in registry.domains:
        specs = registry.tasks(domain)
        model = create_model(
            f"{_camel(domain)}Request",
            __base__=RequestBase,
            __doc__="; ".join(f"{s.name}: {s.summary}" for s in specs),
            domain=(_literal((domain,)), domain),
            task=(_one_of([s.model for s in specs], "type"), ...),
        )
        model.input_rules = {s.model: s.inputs for s in specs}
        models[domain] = model
    return models


def request_adapter(registry: Registry) -> TypeAdapter[RequestBase]:
    """Validates a request of any domain (discriminated on ``domain``, then ``task.type``)."""
    return TypeAdapter(_one_of(list(request_models(registry).values()), "domain"))


def answer_model(registry: Registry) -> type[AnswerBase]:
    tasks = [spec.model for spec in registry]
    return create_model(
        "Answer",
        __base__=AnswerBase,
        domain=(_literal(registry.domains), ...),
        task=(_any_of(tasks), ...),
    )


class ModelIdentity(Strict):
    """The model that answered (the one that actually served it, after canary choice and
    fallback), and the version Triton reported for the answer."""

    checkpoint: str
    triton_model: str
    version: str
    served_by: Literal["primary", "canary", "fallback"] = Field(
        default="primary",
        description="primary: the route's own model; canary: the route's canary (a sticky "
        "share of keys); fallback: the route's fallback, because the model picked first "
        "was not loaded in Triton",
    )


class TokenCounts(Strict):
    prompt: int = Field(ge=0)
    generated: int = Field(ge=0)


class Timings(Strict):
    total_ms: float = Field(ge=0)
    infer_ms: float | None = Field(default=None, ge=0)


class AnswerBase(Strict):
    schema_version: Literal["1"] = "1"
    event_id: EventId = Field(description="the request's event_id")
    domain: str
    task: TaskBase
    model: ModelIdentity
    status: Literal["ok", "unparsed"]
    answer: TypedAnswer = Field(description="typed by kind; text when status is unparsed")
    raw_text: str
    cache: Literal["hit", "miss", "unavailable"] = Field(
        description="hit: served from the result cache; miss: inferred; unavailable: "
        "inferred while the result cache could not be reached"
    )
    timings: Timings
    tokens: TokenCounts
    produced_at: datetime


REQUEST_ADAPTER = request_adapter(REGISTRY)
Answer = answer_model(REGISTRY)
AnyRequest = RequestBase


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
