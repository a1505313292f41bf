"""What an eval run found, per (domain, task): counts, models, metrics; as a table or JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pocketvl.evaluation.dataset import EvalItem
from pocketvl.evaluation.metrics import score_task

TINY_MODEL_PREFIX = "internvl2_tiny"
TINY_NOTE = (
    "NOTE: every answer came from a tiny random-weight model (internvl2_tiny*): these "
    "numbers are meaningless; serve a real Mini-InternVL2 DA checkpoint to measure anything."
)


@dataclass(frozen=True, order=True)
class ModelUsed:
    """A model named by the answers' ``model`` field."""

    triton_model: str
    checkpoint: str
    version: str


@dataclass(frozen=True)
class TaskResult:
    """One (domain, task) group. ``missing``: neither answered nor dead-lettered in time."""

    domain: str
    task: str
    n: int
    answered: int
    dead_lettered: int
    unparsed: int
    missing: int
    models: list[ModelUsed] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    started_at: str
    finished_at: str
    timeout_s: float
    results: list[TaskResult]

    @property
    def n(self) -> int:
        return sum(r.n for r in self.results)

    @property
    def accounted(self) -> int:
        """Requests that came back, as an answer or as a DLQ record."""
        return sum(r.n - r.missing for r in self.results)


def _models(messages: Sequence[Mapping[str, Any]]) -> list[ModelUsed]:
    found = set()
    for message in messages:
        model = message.get("model")
        if isinstance(model, Mapping):
            names = [model.get(k) for k in ("triton_model", "checkpoint", "version")]
            found.add(ModelUsed(*(n if isinstance(n, str) else "?" for n in names)))
    return sorted(found)


def task_result(
    group: Sequence[EvalItem],
    answers: Mapping[str, Mapping[str, Any]],
    dead_lettered: Collection[str],
) -> TaskResult:
    """Count and score one group. An answer wins over a DLQ record for the same request
    (a redelivered request can end both ways; the answer is what a consumer would use)."""
    domain, task = group[0].domain, group[0].task_type
    messages = [answers[i.event_id] for i in group if i.event_id in answers]
    dead = sum(i.event_id in dead_lettered and i.event_id not in answers for i in group)
    return TaskResult(
        domain=domain,
        task=task,
        n=len(group),
        answered=len(messages),
        dead_lettered=dead,
        unparsed=sum(m.get("status") == "unparsed" for m in messages),
        missing=len(group) - len(messages) - dead,
        models=_models(messages),
        metrics=score_task(task, domain, [(i.label, answers.get(i.event_id)) for i in group]),
    )


def task_results(
    items: Sequence[EvalItem],
    answers: Mapping[str, Mapping[str, Any]],
    dead_lettered: Collection[str],
) -> list[TaskResult]:
    """One result per (domain, task), sorted by domain then task."""
    groups: dict[tuple[str, str], list[EvalItem]] = defaultdict(list)
    for item in items:
        groups[(item.domain, item.task_type)].append(item)
    return [task_result(groups[k], answers, dead_lettered) for k in sorted(groups)]


def only_tiny_models(report: EvalReport) -> bool:
    """True when answers came back and every one is from a tiny random-weight model."""
    models = [m for r in report.results for m in r.models]
    return bool(models) and all(m.triton_model.startswith(TINY_MODEL_PREFIX) for m in models)


def to_json(report: EvalReport) -> str:
    """The report as a JSON document (strict JSON: no NaN, as no metric is ever NaN)."""
    document = {**asdict(report), "n": report.n, "accounted": report.accounted}
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)


def _metrics_text(metrics: Mapping[str, float]) -> str:
    return "  ".join(f"{name}={value:.3f}" for name, value in metrics.items()) or "-"


def render_table(report: EvalReport) -> str:
    """A fixed-width table, one row per (domain, task), under a line naming the run."""
    header = ("domain", "task", "model", "n", "answered", "dlq", "unparsed", "missing")
    rows = [
        (
            r.domain,
            r.task,
            ",".join(sorted({m.triton_model for m in r.models})) or "-",
            *(str(v) for v in (r.n, r.answered, r.dead_lettered, r.unparsed, r.missing)),
        )
        for r in report.results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str], metrics: str) -> str:
        left = [c.ljust(w) for c, w in zip(cells[:3], widths[:3], strict=True)]
        right = [c.rjust(w) for c, w in zip(cells[3:], widths[3:], strict=True)]
        return "  ".join([*left, *right, metrics])

    table = [line(header, "metrics")]
    table.append("-" * len(table[0]))
    table += [
        line(row, _metrics_text(r.metrics)) for row, r in zip(rows, report.results, strict=True)
    ]
    title = (
        f"eval of {report.dataset} at {report.started_at}: "
        f"{report.accounted}/{report.n} requests accounted for"
    )
    return "\n".join([title, "", *table])
