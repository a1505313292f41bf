"""``pocketvl eval`` on the real local stack: publish a labelled set, a worker answers it,
every request is accounted for (answered or dead-lettered), and the report is scored."""

from __future__ import annotations

import json
import math
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from pocketvl.devstack.paths import TINY_MODELS
from pocketvl.errors import PocketvlError
from pocketvl.evaluation.report import TINY_NOTE
from pocketvl.evaluation.runner import eval_command
from pocketvl.service import build_worker
from pocketvl.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.integration
SAMPLE = REPO / "schemas" / "examples" / "eval-sample.jsonl"
ANSWERED = [
    ("driving", "bdd"),
    ("driving", "drivelm"),
    ("medical", "choice"),
    ("remote_sensing", "ground"),
    ("remote_sensing", "vqa"),
]
DEAD = ("remote_sensing", "classify")
# Valid base64 of a bare PNG signature: the line validates, the worker cannot decode the
# image and dead-letters the request.
CORRUPT_IMAGE = {"kind": "inline", "media_type": "image/png", "data_b64": "iVBORw0KGgo="}


def write_dataset(path: Path) -> int:
    """Six items from the shipped sample set (requests built from schemas/examples), with
    fresh event ids: five the worker answers, one classify request it must dead-letter."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for line in map(json.loads, SAMPLE.read_text().splitlines()):
        first.setdefault((line["request"]["domain"], line["request"]["task"]["type"]), line)
    request = {k: v for k, v in first[DEAD]["request"].items() if k != "decode"}  # TIFF bands
    dead = first[DEAD] | {"request": request | {"images": [CORRUPT_IMAGE]}}
    items = [first[kind] for kind in ANSWERED] + [dead]
    run = uuid.uuid4().hex[:8]
    fresh = [
        item | {"request": item["request"] | {"event_id": f"it-{run}-{n}"}}
        for n, item in enumerate(items)
    ]
    path.write_text("".join(json.dumps(item) + "\n" for item in fresh))
    return len(fresh)


def test_eval_accounts_for_every_request_and_scores_each_task(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, out = tmp_path / "set.jsonl", tmp_path / "report.json"
    count = write_dataset(dataset)
    worker = build_worker(settings)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, count), daemon=True)
    thread.start()
    try:
        assert eval_command(settings, dataset, out, timeout_s=240) == 0
    finally:
        stop.set()
        thread.join(timeout=60)
        worker.close()

    report = json.loads(out.read_text())
    assert (report["n"], report["accounted"], report["dataset"]) == (6, 6, str(dataset))
    results = {(r["domain"], r["task"]): r for r in report["results"]}
    assert sorted(results) == sorted([*ANSWERED, DEAD])
    assert sum(r["dead_lettered"] for r in results.values()) == 1
    assert results[DEAD]["dead_lettered"] == 1
    assert results[DEAD]["metrics"] == {"accuracy": 0.0}  # a dead-lettered item is wrong
    for kind in ANSWERED:
        result = results[kind]
        assert (result["n"], result["answered"], result["missing"]) == (1, 1, 0), kind
        assert {m["triton_model"] for m in result["models"]} == {TINY_MODELS[0]}
    for result in results.values():
        assert result["metrics"], result  # every group has something scorable
        for name, value in result["metrics"].items():
            assert math.isfinite(value), name
            assert name.endswith("_rmse") or 0.0 <= value <= 1.0, name

    printed = capsys.readouterr().out
    assert "6/6 requests accounted for" in printed
    assert TINY_NOTE in printed  # the tiny model's numbers are flagged as meaningless
    assert f"report written to {out}" in printed


def test_eval_without_a_worker_says_to_start_one(settings: Settings, tmp_path: Path) -> None:
    dataset = tmp_path / "set.jsonl"
    write_dataset(dataset)
    with pytest.raises(PocketvlError, match="is a worker running"):
        eval_command(settings, dataset, None, timeout_s=3)
