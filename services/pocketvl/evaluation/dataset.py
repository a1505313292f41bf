"""Labelled eval sets: JSON Lines, one item per line, checked before anything is sent.

Each line is an object::

    {"key": "<Kafka key, optional>",
     "request": <a request message, exactly as schemas/request.schema.json>,
     "label": <the expected answer, shaped by the request's domain and task>}

``request.event_id`` must be unique in the file: answers are matched back by it. Without
``key`` the request is published with its domain as the key. Blank lines are skipped.
The label, per ``domain/task``:

=========================  ===================================================================
driving/drivelm            ``{"answer": str, "choice": str | null, "objects": [{"camera": str,
                           "x": float, "y": float}]}``: ``choice`` is the option letter of a
                           multiple-choice question; ``objects`` are the centre points the
                           answer mentions, in pixels of that camera's original image
                           (nuScenes frames are 1600x900)
driving/bdd                ``{"action": str | null, "justification": str | null,
                           "speed": float | null, "turning_angle": float | null}`` (m/s, degrees)
remote_sensing/vqa         ``{"answer": str}``
remote_sensing/classify    ``{"label": str}``: one of the request's labels
remote_sensing/ground      ``{"boxes": [[x1, y1, x2, y2]]}``: pixels in the original image
remote_sensing/caption     ``{"caption": str}``
medical/vqa                ``{"answer": str}``
medical/choice             ``{"letter": str}``: the correct option's letter, ``A`` first
=========================  ===================================================================

A line that is not valid is refused with its line number and what is wrong
(:class:`~pocketvl.errors.PocketvlError`), so a set never half-runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError

from pocketvl.contracts.common import Strict
from pocketvl.contracts.messages import REQUEST_ADAPTER, AnyRequest
from pocketvl.domains.registry import REGISTRY
from pocketvl.errors import PocketvlError, describe_errors

Text = Annotated[str, Field(min_length=1)]


class _Line(Strict):
    key: Text | None = None
    request: dict[str, Any]
    label: dict[str, Any]


@dataclass(frozen=True)
class EvalItem:
    """One labelled request. ``payload`` is the request as written: it is published as is."""

    line: int
    key: str | None
    request: AnyRequest
    payload: dict[str, Any]
    label: Strict  # the task spec's label model

    @property
    def event_id(self) -> str:
        return self.request.event_id

    @property
    def domain(self) -> str:
        return self.request.domain

    @property
    def task_type(self) -> str:
        return self.request.task.type


def parse_item(text: str, line: int) -> EvalItem:
    """One line to an item; ``ValueError`` says what is wrong (without the line number)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})") from exc
    if not isinstance(raw, dict):
        raise ValueError('expected an object {"key": ..., "request": ..., "label": ...}')
    try:
        parts = _Line.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(describe_errors(exc)) from exc
    try:
        request = REQUEST_ADAPTER.validate_python(parts.request)
    except ValidationError as exc:
        raise ValueError(describe_errors(exc, "request")) from exc
    spec = REGISTRY.for_task(request.task)
    try:
        label = spec.label.model_validate(parts.label)
    except ValidationError as exc:
        raise ValueError(f"a {spec.key} label: {describe_errors(exc, 'label')}") from exc
    if spec.check_label is not None:
        spec.check_label(request.task, label)
    return EvalItem(line, parts.key, request, parts.request, label)


def parse_dataset(text: str, source: str = "<dataset>") -> list[EvalItem]:
    """Every item of a JSON Lines text; the first bad line raises ``PocketvlError``."""
    items: list[EvalItem] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = parse_item(line, number)
        except ValueError as exc:
            raise PocketvlError(f"{source} line {number}: {exc}") from exc
        if item.event_id in first_seen:
            raise PocketvlError(
                f"{source} line {number}: event_id {item.event_id!r} is already used on line "
                f"{first_seen[item.event_id]}; answers are matched by event_id, so each must "
                "be unique"
            )
        first_seen[item.event_id] = number
        items.append(item)
    if not items:
        raise PocketvlError(f"{source}: no items (expected one JSON object per line)")
    return items


def load_dataset(path: Path) -> list[EvalItem]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PocketvlError(f"cannot read the eval set {path}: {exc}") from exc
    return parse_dataset(text, str(path))
