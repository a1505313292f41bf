"""What one task is, declared once: ``TaskSpec``.

A spec ties a task's request model to everything the service derives from it: the input
rules a request must meet (else ``schema_invalid``), how its images are laid out for the
model, the question text, the answer parser and the answer kinds it yields, the DA
checkpoint family that serves it, its evaluation label and metric, and the sample answer
and documentation the demo and the README show. ``pocketvl.domains.registry`` holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pocketvl.contracts.answers import AnyAnswer
from pocketvl.contracts.common import VIDEO_MEDIA_TYPES, Strict
from pocketvl.contracts.tasks import TaskBase

T = TypeVar("T", bound=TaskBase)

# How a request's decoded images become the model's input:
# "as_decoded": each image as is; "drivelm_stitch": the six cameras stitched into one
# labelled 2688x896 picture; "video_frames": every frame one tile, introduced by
# "Frame1: <image>" lines.
Layout = Literal["as_decoded", "drivelm_stitch", "video_frames"]
# Which of the DA checkpoint families serves a task.
CheckpointFamily = Literal["DriveLM", "BDD", "RS", "Medical"]
# Names of the scorers in pocketvl.evaluation.metrics.
Metric = Literal["drivelm", "bdd", "exact_match", "accuracy", "grounding"]
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


@dataclass(frozen=True)
class InputRule:
    """The images a task accepts. ``names``: exactly these named stills, one each.
    ``video``: "never", or "alone" (one video, or frames as stills, never both)."""

    min_images: int = 1
    max_images: int = 16
    video: Literal["never", "alone"] = "never"
    names: tuple[str, ...] | None = None

    def problem(self, task: str, images: list[Any]) -> str | None:
        """Why ``images`` do not fit, in one sentence; None when they do."""
        videos = [i for i in images if i.media_type in VIDEO_MEDIA_TYPES]
        if self.names is not None:
            if sorted(i.name or "" for i in images) != sorted(self.names) or videos:
                count = len(self.names)
                return f"{task} needs exactly {count} still images named {', '.join(self.names)}"
            return None
        if videos and self.video == "never":
            return f"{task} takes images, not video"
        if videos and len(images) != 1:
            return f"{task} takes one video, or frames as images, not both"
        if not self.min_images <= len(images) <= self.max_images:
            if self.min_images == self.max_images:
                return f"{task} takes exactly {self.min_images} image(s), not {len(images)}"
            return f"{task} takes {self.min_images} to {self.max_images} images, not {len(images)}"
        return None


@dataclass(frozen=True)
class TaskDocs:
    """The README's task table row: what to send and what comes back, in a few words."""

    fields: str  # the task's own fields, e.g. "`question`"
    inputs: str
    sent_as: str
    answer: str


@dataclass(frozen=True)
class TaskSpec(Generic[T]):
    domain: str
    model: type[T]  # the task's request model; its ``type`` Literal is the task's name
    summary: str  # one line, for CLI help
    inputs: InputRule
    layout: Layout
    prompt: Callable[[T], str]  # the question text (the model adds <image> placeholders)
    parse: Callable[[T, str, ParseContext], AnyAnswer | None]  # None: unparsed
    answer_kinds: tuple[str, ...]  # the ``kind`` values ``parse`` can return
    checkpoint: CheckpointFamily
    label: type[Strict]  # an evaluation item's label
    metric: Metric
    published_answer: str  # an answer in the format the checkpoint was trained on
    docs: TaskDocs
    # Cross-checks between a label and its request that a schema cannot express (a
    # multiple-choice letter within the options); raises ValueError saying what is wrong.
    check_label: Callable[[T, Any], None] | None = None

    @property
    def name(self) -> str:
        default = self.model.model_fields["type"].default
        if not isinstance(default, str):
            raise TypeError(f"{self.model.__name__}.type needs a Literal default: its name")
        return default

    @property
    def key(self) -> str:
        return f"{self.domain}/{self.name}"

    def example_file(self) -> str:
        return f"{self.domain}.{self.name}.json"
