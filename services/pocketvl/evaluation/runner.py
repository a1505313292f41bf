"""``pocketvl eval DATASET.jsonl``: send a labelled set through the service and score it.

The eval goes through Kafka exactly as production traffic does: every request is published
to ``{prefix}.{domain}.requests`` and its outcome read back from ``{prefix}.{domain}.answers``
or ``.dlq``. It does not answer anything itself: a worker must be running against the same
broker (``pocketvl worker --stack``, or ``build_worker(settings).run(...)`` in-process as
the integration test does). Requests that neither answer nor DLQ record accounts for within
the timeout are reported as ``missing``, and count as wrong.

Records of this run are told apart from older ones on the same topics by the
``x-pocketvl-eval-run`` header, which workers copy from each request onto its answer or DLQ
record (``x-*`` passthrough); so re-running a set with the same event ids scores fresh
answers. A repeated request may still be answered from the Redis cache, as in production.

``schemas/examples/eval-sample.jsonl`` is a tiny labelled set, one item per task: the
requests of ``schemas/examples/*.json`` (drawn by ``tests.support.samples``, synthetic), event
ids renamed ``eval-sample-*``. Its labels describe what those pictures show: the three
vehicle centres of CAM_FRONT ``road_scene(11)`` in its 320x180 pixels, the river of
``satellite_tile(2)`` (box and "yes"), the river in ``multiband_tiff(3)``, the nodule of
``chest_xray(3)`` ("Nodule", B) and of ``chest_xray(5)`` under the DICOM, which lies in the
image's left half: the patient's right lung, so "no" to "a nodule in the left lung?". The
BDD speed and angle and the caption are made up.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pocketvl.adapters.kafka_broker import ensure_topics, publish, read_records
from pocketvl.errors import PocketvlError
from pocketvl.evaluation.dataset import EvalItem, load_dataset
from pocketvl.evaluation.report import (
    TINY_NOTE,
    EvalReport,
    only_tiny_models,
    render_table,
    task_results,
    to_json,
)
from pocketvl.settings import Settings
from pocketvl.worker.envelope import (
    Headers,
    InboundRecord,
    OutboundRecord,
    all_topics,
    cloudevent_headers,
    now_rfc3339,
    topic,
)

RUN_HEADER = "x-pocketvl-eval-run"
SEND_TIMEOUT_S = 30.0
# Each read starts again from the beginning of the topics (reading never joins a consumer
# group, so it never disturbs workers); short slices keep the wait close to the last answer.
READ_SLICE_S = 2.0
Progress = Callable[[int, int], None]


def request_record(prefix: str, item: EvalItem, run_id: str) -> OutboundRecord:
    """The item's request as written, with CloudEvents headers and the run's tag."""
    headers: Headers = cloudevent_headers(
        item.event_id, "/pocketvl/eval", f"pocketvl.{item.domain}.request.v1"
    )
    headers.append((RUN_HEADER, run_id.encode()))
    return OutboundRecord(
        topic(prefix, item.domain, "requests"),
        (item.key or item.domain).encode(),
        json.dumps(item.payload, ensure_ascii=False).encode(),
        headers,
    )


def publish_requests(settings: Settings, items: Sequence[EvalItem], run_id: str) -> None:
    """Publish every request and wait until the broker has acknowledged all of them."""
    prefix = settings.kafka.topic_prefix
    records = [request_record(prefix, item, run_id) for item in items]
    limit = settings.kafka.max_message_bytes
    for item, record in zip(items, records, strict=True):
        if len(record.value) > limit:  # refused before anything is sent, not half-way
            raise PocketvlError(
                f"line {item.line}: the request is {len(record.value)} bytes, over "
                f"kafka.max_message_bytes ({limit}): use claim-check image references"
            )
    ensure_topics(settings.kafka, all_topics(prefix))
    publish(settings.kafka, records, SEND_TIMEOUT_S)


def account_record(
    record: InboundRecord,
    run_id: str,
    wanted: set[str],
    answers: dict[str, dict[str, Any]],
    dead_lettered: set[str],
) -> None:
    """File one answer or DLQ record under its request's event id, if it is one of ours.

    Answers carry the ``event_id``; DLQ records carry the original request bytes, so their
    event id is read from the value (our requests are all valid JSON). A record tagged by
    another run is ignored; an untagged one (a worker that drops headers) is taken.
    """
    tag = dict(record.headers).get(RUN_HEADER)
    if tag is not None and tag != run_id.encode():
        return
    try:
        value = json.loads(record.value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return
    event_id = value.get("event_id") if isinstance(value, dict) else None
    if not isinstance(event_id, str) or event_id not in wanted:
        return
    if record.topic.endswith(".dlq"):
        dead_lettered.add(event_id)
    else:
        answers.setdefault(event_id, value)  # at-least-once: a repeat is the same answer


def collect_outcomes(
    settings: Settings,
    items: Sequence[EvalItem],
    run_id: str,
    timeout_s: float,
    progress: Progress | None = None,
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Answers by event id, and the ids that were dead-lettered, until every request is
    accounted for or ``timeout_s`` passes."""
    wanted = {item.event_id for item in items}
    prefix = settings.kafka.topic_prefix
    domains = sorted({item.domain for item in items})
    topics = [topic(prefix, d, kind) for d in domains for kind in ("answers", "dlq")]
    answers: dict[str, dict[str, Any]] = {}
    dead: set[str] = set()
    deadline = time.monotonic() + timeout_s
    known = 0  # records the topics hold, as far as we know
    reported = -1
    while (missing := len(wanted - answers.keys() - dead)) and time.monotonic() < deadline:
        # Ask for just enough records to complete the set, so a read returns as soon as they
        # are there instead of waiting out its slice. A read that stops at that cap may have
        # left newer records unread (older runs on the same topics): ask for twice as many.
        cap = known + missing
        slice_s = min(READ_SLICE_S, max(0.1, deadline - time.monotonic()))
        records = read_records(settings.kafka, topics, cap, slice_s)
        known = 2 * len(records) if len(records) >= cap else len(records)
        for record in records:
            account_record(record, run_id, wanted, answers, dead)
        done = len(wanted) - len(wanted - answers.keys() - dead)
        if progress is not None and done != reported:
            progress(done, len(wanted))
            reported = done
    return answers, dead


def run_eval(
    settings: Settings,
    dataset: Path,
    timeout_s: float,
    progress: Progress | None = None,
) -> EvalReport:
    """Publish the set, wait for its outcomes, score them per (domain, task).

    Needs a running worker (see the module docstring); raises ``PocketvlError`` for a bad
    set (before anything is sent) or an unreachable broker.
    """
    items = load_dataset(dataset)
    run_id = uuid.uuid4().hex
    started = now_rfc3339()
    publish_requests(settings, items, run_id)
    answers, dead = collect_outcomes(settings, items, run_id, timeout_s, progress)
    return EvalReport(
        dataset=str(dataset),
        started_at=started,
        finished_at=now_rfc3339(),
        timeout_s=timeout_s,
        results=task_results(items, answers, dead),
    )


def _print_progress(done: int, total: int) -> None:
    print(f"\r{done}/{total} requests accounted for", end="", file=sys.stderr, flush=True)


def eval_command(settings: Settings, dataset: Path, out: Path | None, timeout_s: float) -> int:
    """The CLI command: run, print the table (and the tiny-model note), write the JSON."""
    report = run_eval(settings, dataset, timeout_s, progress=_print_progress)
    print(file=sys.stderr)  # end the progress line
    if report.accounted == 0:
        raise PocketvlError(
            f"none of the {report.n} requests was answered or dead-lettered within "
            f"{timeout_s:g} s: is a worker running on this broker? (`pocketvl worker --stack`)"
        )
    print(render_table(report))
    if report.accounted < report.n:
        print(
            f"\n{report.n - report.accounted} requests were not answered within "
            f"{timeout_s:g} s (counted as wrong): raise --timeout or add workers"
        )
    if only_tiny_models(report):
        print(f"\n{TINY_NOTE}")
    if out is not None:
        try:
            out.write_text(to_json(report) + "\n", encoding="utf-8")
        except OSError as exc:
            raise PocketvlError(f"cannot write the report to {out}: {exc}") from exc
        print(f"\nreport written to {out}")
    return 0
