"""Scores of answers against labels, as the published DA evaluations compute them (pure).

Sources (the published evaluation code of each benchmark):

- DIOR-RSVG (InternVL ``eval/rs_det``): the answer's first box against the first gold box,
  IoU with the "+1 pixel" convention, correct when IoU > 0.5; no box counts as wrong.
- RSVQA (InternVL ``eval/rs_vqa``): exact match, case-insensitive (its count/area buckets
  are not reproduced: a dataset's labels say what they expect).
- BDD-X control (DriveGPT4; Mini-InternVL Tables 6-7): RMSE, and A_tau = fraction with
  |error| < tau for tau in 0.1, 0.5, 1.0, 5.0 (m/s and degrees).
- DriveLM challenge ``evaluation.py``: accuracy (exact match) and "match", the F1 of
  predicted vs gold object centres, a prediction matching if L1 distance < 16 px. Out of
  scope: its GPT score and language metrics (BLEU, ROUGE-L, CIDEr), hence captions by exact
  match only and BDD action/justification texts not at all.

Predictions come from answer messages (``schemas/answer.schema.json``): the typed ``answer``
when ``status`` is ``ok``. An unparsed, dead-lettered or missing answer, or one of a kind
the task does not produce, is "no prediction", which counts as wrong.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from pocketvl.contracts.common import Strict
from pocketvl.domains.labels import (
    AnswerLabel,
    BDDLabel,
    CaptionLabel,
    ClassLabel,
    DriveLMLabel,
    GroundLabel,
    LetterLabel,
)
from pocketvl.domains.registry import REGISTRY
from pocketvl.domains.spec import Metric

Box = tuple[float, float, float, float]
AnswerMessage = Mapping[str, Any]
Pair = tuple[Strict, AnswerMessage | None]
BDD_TAUS = (0.1, 0.5, 1.0, 5.0)
DRIVELM_MATCH_PX = 16.0
L = TypeVar("L", bound=Strict)


class Point(NamedTuple):
    """An object's centre in pixels of one camera (DriveLM's ``<c1,CAM_FRONT,x,y>``)."""

    camera: str
    x: float
    y: float


def _intersection(a: Box, b: Box) -> float:
    """Pixels two boxes share, corners inclusive (``_intersection(a, a)`` is a's area)."""
    width = min(a[2], b[2]) - max(a[0], b[0]) + 1
    return max(0.0, width) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)


def iou_plus_one(a: Box, b: Box) -> float:
    """IoU of ``[x1, y1, x2, y2]`` boxes whose corners are inclusive pixels, so a box covers
    ``(x2 - x1 + 1) * (y2 - y1 + 1)`` pixels (DIOR-RSVG's evaluation in InternVL ``rs_det``)."""
    inter = _intersection(a, b)
    union = _intersection(a, a) + _intersection(b, b) - inter
    return inter / union if union > 0 else 0.0


def grounding_acc_at_05(preds: Sequence[Sequence[Box]], golds: Sequence[Sequence[Box]]) -> float:
    """DIOR-RSVG Acc@0.5: the first predicted box vs the first gold box, IoU > 0.5.
    An item without a predicted box counts as wrong."""
    hits = [bool(p) and bool(g) and iou_plus_one(p[0], g[0]) > 0.5 for p, g in _zip(preds, golds)]
    return accuracy(hits)


def normalise_answer(text: str) -> str:
    """Lower case, runs of whitespace as one space, surrounding punctuation dropped, so that
    "Yes." matches "yes" (the models are told to answer with a single word or phrase)."""
    return " ".join(text.lower().split()).strip(string.punctuation + string.whitespace)


def exact_match(pred: str | None, gold: str) -> bool:
    """RSVQA / DriveLM accuracy: the whole normalised answer equals the gold one."""
    return pred is not None and normalise_answer(pred) == normalise_answer(gold)


def accuracy(hits: Sequence[bool]) -> float:
    """Fraction correct; an empty set has no accuracy (``ValueError``)."""
    if not hits:
        raise ValueError("accuracy of no items")
    return sum(hits) / len(hits)


def rmse(preds: Sequence[float | None], golds: Sequence[float]) -> float | None:
    """Root mean squared error over the items that have a prediction (None when none has:
    report :func:`coverage` beside it, or a model that answers rarely looks accurate)."""
    errors = [p - g for p, g in _zip(preds, golds) if p is not None]
    return math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else None


def coverage(preds: Sequence[float | None]) -> float:
    """Fraction of items that have a prediction."""
    return accuracy([p is not None for p in preds])


def threshold_accuracy(
    preds: Sequence[float | None], golds: Sequence[float], taus: Sequence[float] = BDD_TAUS
) -> dict[float, float]:
    """BDD-X A_tau: per tau, the fraction of items with |pred - gold| < tau; an item without
    a prediction counts as wrong (unlike :func:`rmse`)."""
    pairs = _zip(preds, golds)
    return {tau: accuracy([p is not None and abs(p - g) < tau for p, g in pairs]) for tau in taus}


def point_match_f1(
    pred_points: Sequence[Point],
    gold_points: Sequence[Point],
    threshold_px: float = DRIVELM_MATCH_PX,
) -> float:
    """DriveLM "match": predictions in order each take the nearest unmatched gold point
    (L1 distance), a match if closer than ``threshold_px``; F1 of the matches.

    As DriveLM's ``match_result`` does, except that only points of the same camera can
    match (DriveLM compares bare numbers). Neither side having points is a perfect 1.0.
    """
    if not pred_points and not gold_points:
        return 1.0
    unmatched = list(gold_points)
    matched = 0
    for pred in pred_points:
        same_camera = [g for g in unmatched if g.camera == pred.camera]
        if not same_camera:
            continue
        nearest = min(same_camera, key=lambda g: _l1(g, pred))
        if _l1(nearest, pred) < threshold_px:
            matched += 1
            unmatched.remove(nearest)
    if matched == 0:
        return 0.0
    precision, recall = matched / len(pred_points), matched / len(gold_points)
    return 2 * precision * recall / (precision + recall)


def _l1(a: Point, b: Point) -> float:
    return abs(a.x - b.x) + abs(a.y - b.y)


def _zip(preds: Sequence[Any], golds: Sequence[Any]) -> list[tuple[Any, Any]]:
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold items")
    return list(zip(preds, golds, strict=True))


def typed_answer(message: AnswerMessage | None, *kinds: str) -> Mapping[str, Any] | None:
    """The typed answer when the message is ``ok`` and of one of ``kinds``, else None."""
    if message is None or message.get("status") != "ok":
        return None
    answer = message.get("answer")
    return answer if isinstance(answer, Mapping) and answer.get("kind") in kinds else None


def _text(answer: Mapping[str, Any] | None, name: str) -> str | None:
    value = answer.get(name) if answer is not None else None
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    real = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if real and math.isfinite(value) else None


def _measure(answer: Mapping[str, Any] | None, name: str) -> float | None:
    """``{"value": 3.2, "unit": ...}`` of a bdd answer, as a number."""
    value = answer.get(name) if answer is not None else None
    return _number(value.get("value")) if isinstance(value, Mapping) else None


def _points(answer: Mapping[str, Any] | None) -> list[Point]:
    objects = answer.get("objects") if answer is not None else None
    points = []
    for ref in objects if isinstance(objects, list) else []:
        if not isinstance(ref, Mapping) or not isinstance(ref.get("camera"), str):
            continue
        x, y = _number(ref.get("x")), _number(ref.get("y"))
        if x is not None and y is not None:
            points.append(Point(ref["camera"], x, y))
    return points


def _first_box(answer: Mapping[str, Any] | None) -> list[Box]:
    boxes = answer.get("boxes") if answer is not None else None
    if not isinstance(boxes, list) or not boxes or not isinstance(boxes[0], Mapping):
        return []
    numbers = [_number(boxes[0].get(k)) for k in ("x1", "y1", "x2", "y2")]
    corners = [n for n in numbers if n is not None]
    if len(corners) != 4:  # a box without four numeric corners is no box
        return []
    return [(corners[0], corners[1], corners[2], corners[3])]


def _short_answer(message: AnswerMessage | None) -> str | None:
    """Open VQA: free text, or a yes/no answer read as the word."""
    answer = typed_answer(message, "text", "yes_no")
    if answer is not None and answer.get("kind") == "yes_no":
        value = answer.get("value")
        return ("yes" if value else "no") if isinstance(value, bool) else None
    return _text(answer, "text")


def _narrow(pairs: Sequence[Pair], kind: type[L]) -> list[tuple[L, AnswerMessage | None]]:
    out: list[tuple[L, AnswerMessage | None]] = []
    for label, message in pairs:
        if not isinstance(label, kind):
            raise TypeError(f"a {type(label).__name__} among {kind.__name__} items")
        out.append((label, message))
    return out


def _score_drivelm(pairs: Sequence[Pair]) -> dict[str, float]:
    items = [(g, typed_answer(m, "drivelm", "text")) for g, m in _narrow(pairs, DriveLMLabel)]
    scores = {"exact_match": accuracy([exact_match(_text(a, "text"), g.answer) for g, a in items])}
    choices = [exact_match(_text(a, "choice"), g.choice) for g, a in items if g.choice]
    if choices:
        scores["choice_accuracy"] = accuracy(choices)
    # DriveLM scores "match" on the questions whose answers locate objects.
    f1s = [
        point_match_f1(_points(a), [Point(o.camera, o.x, o.y) for o in g.objects])
        for g, a in items
        if g.objects
    ]
    if f1s:
        scores["match_f1"] = sum(f1s) / len(f1s)
    return scores


def _score_bdd(pairs: Sequence[Pair]) -> dict[str, float]:
    items = [(g, typed_answer(m, "bdd")) for g, m in _narrow(pairs, BDDLabel)]
    scores: dict[str, float] = {}
    every_pred: list[float | None] = []  # over all labelled speed and angle values
    for name, field in (("speed", "speed"), ("angle", "turning_angle")):
        scored = [(v, _measure(a, field)) for g, a in items if (v := getattr(g, field)) is not None]
        if scored:
            golds, preds = [g for g, _ in scored], [p for _, p in scored]
            every_pred += preds
            scores |= {f"{name}_acc@{t}": a for t, a in threshold_accuracy(preds, golds).items()}
            if (error := rmse(preds, golds)) is not None:
                scores[f"{name}_rmse"] = error
    if every_pred:
        scores["coverage"] = coverage(every_pred)
    return scores


def _score_ground(pairs: Sequence[Pair]) -> dict[str, float]:
    items = _narrow(pairs, GroundLabel)
    preds = [_first_box(typed_answer(m, "boxes")) for _, m in items]
    return {"acc@0.5": grounding_acc_at_05(preds, [g.boxes for g, _ in items])}


def _one_answer_hit(label: Strict, message: AnswerMessage | None) -> bool:
    """Whether a one-string answer (vqa, class, caption, option letter) equals its label."""
    match label:
        case AnswerLabel():
            return exact_match(_short_answer(message), label.answer)
        case ClassLabel():
            return exact_match(_text(typed_answer(message, "label"), "label"), label.label)
        case CaptionLabel():
            return exact_match(_text(typed_answer(message, "text"), "text"), label.caption)
        case LetterLabel():
            return exact_match(_text(typed_answer(message, "choice"), "letter"), label.letter)
    raise TypeError(f"{type(label).__name__} is not a one-answer label")


def _one_answer_scorer(metric: str) -> Callable[[Sequence[Pair]], dict[str, float]]:
    return lambda pairs: {metric: accuracy([_one_answer_hit(g, m) for g, m in pairs])}


# Keyed by the metric a task spec names.
SCORERS: dict[Metric, Callable[[Sequence[Pair]], dict[str, float]]] = {
    "drivelm": _score_drivelm,
    "bdd": _score_bdd,
    "exact_match": _one_answer_scorer("exact_match"),
    "accuracy": _one_answer_scorer("accuracy"),
    "grounding": _score_ground,
}


def score_task(task_type: str, domain: str, pairs: Sequence[Pair]) -> dict[str, float]:
    """The metrics of one (domain, task) group of (label, answer message or None) pairs.

    drivelm: exact_match, choice_accuracy (items with a gold choice), match_f1 (items with
    gold objects); bdd: speed_/angle_rmse (over predicted items), speed_/angle_acc@tau,
    coverage; vqa and caption: exact_match; classify and medical choice: accuracy; ground:
    acc@0.5. A metric with no item to score is left out rather than reported as 0 or NaN.
    """
    try:
        spec = REGISTRY.get(domain, task_type)
    except KeyError as exc:
        raise ValueError(f"no metrics for {domain}/{task_type}") from exc
    return SCORERS[spec.metric](pairs) if pairs else {}
