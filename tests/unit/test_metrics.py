"""Eval metrics, dataset loading and report rendering on small hand-made sets."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from pocketvl.domains.labels import (
    AnswerLabel,
    BDDLabel,
    CaptionLabel,
    ClassLabel,
    DriveLMLabel,
    GroundLabel,
    LetterLabel,
)
from pocketvl.errors import PocketvlError
from pocketvl.evaluation import runner
from pocketvl.evaluation.dataset import load_dataset, parse_dataset
from pocketvl.evaluation.metrics import (
    Point,
    accuracy,
    coverage,
    exact_match,
    grounding_acc_at_05,
    iou_plus_one,
    point_match_f1,
    rmse,
    score_task,
    threshold_accuracy,
)
from pocketvl.evaluation.report import (
    EvalReport,
    only_tiny_models,
    render_table,
    task_results,
    to_json,
)
from pocketvl.settings import TINY_CHECKPOINT, TINY_MODEL, KafkaSettings, LimitSettings, Settings
from pocketvl.worker.envelope import InboundRecord
from tests.conftest import REPO

SAMPLE = REPO / "schemas" / "examples" / "eval-sample.jsonl"
TINY = {"checkpoint": TINY_CHECKPOINT, "triton_model": TINY_MODEL, "version": "1"}


def message(answer: dict[str, Any] | None, status: str = "ok", **extra: Any) -> dict[str, Any]:
    """An answer message as the worker writes it (only the fields scoring reads)."""
    body = answer or {"kind": "text", "text": "???"}
    return {"status": status, "answer": body, "raw_text": "raw", "model": TINY, **extra}


def test_iou_counts_corner_pixels_inclusively() -> None:
    # each box covers 10x10 = 100 pixels; they share [5..9]x[5..9] = 25: 25 / (100+100-25)
    assert iou_plus_one((0, 0, 9, 9), (5, 5, 14, 14)) == pytest.approx(25 / 175)
    assert iou_plus_one((0, 0, 9, 9), (9, 9, 18, 18)) == pytest.approx(1 / 199)  # one pixel
    assert iou_plus_one((0, 0, 9, 9), (20, 20, 29, 29)) == 0.0
    assert iou_plus_one((3, 4, 7, 8), (3, 4, 7, 8)) == 1.0


def test_grounding_uses_first_boxes_and_iou_strictly_above_half() -> None:
    gold = [(0.0, 0.0, 9.0, 9.0)]
    preds = [
        [(0.0, 0.0, 9.0, 9.0), (50.0, 50.0, 60.0, 60.0)],  # first box right: hit
        [(50.0, 50.0, 60.0, 60.0), (0.0, 0.0, 9.0, 9.0)],  # right box second: miss
        [(0.0, 0.0, 9.0, 19.0)],  # 100 / 200 = exactly 0.5: not > 0.5, miss
        [],  # no box: miss
    ]
    assert grounding_acc_at_05(preds, [gold] * 4) == pytest.approx(1 / 4)


def test_exact_match_ignores_case_surrounding_punctuation_and_spacing() -> None:
    assert exact_match("Yes.", "yes")
    assert exact_match("  Dense   residential area ", "dense residential area")
    assert not exact_match("no", "yes")
    assert not exact_match("yes, a river", "yes")
    assert not exact_match(None, "yes")


def test_accuracy_rmse_coverage_and_thresholds() -> None:
    assert accuracy([True, False, True, True]) == 0.75
    with pytest.raises(ValueError, match="no items"):
        accuracy([])
    # errors 1, -1, 2 (the None is skipped): sqrt((1 + 1 + 4) / 3) = sqrt(2)
    assert rmse([11.0, None, 9.0, 12.0], [10.0, 3.0, 10.0, 10.0]) == pytest.approx(math.sqrt(2))
    assert rmse([None, None], [1.0, 2.0]) is None
    assert coverage([1.0, None, 2.0, None]) == 0.5
    # |errors| 0.05, 0.3, 0.9, 4 and one missing (wrong at every tau), out of 5
    got = threshold_accuracy([10.05, 10.3, 10.9, 14.0, None], [10.0] * 5)
    assert got == pytest.approx({0.1: 0.2, 0.5: 0.4, 1.0: 0.6, 5.0: 0.8})
    with pytest.raises(ValueError, match="2 predictions for 1"):
        rmse([1.0, 2.0], [1.0])


def test_point_match_is_greedy_one_to_one_within_a_camera() -> None:
    preds = [Point("CAM_FRONT", 100, 100), Point("CAM_FRONT", 500, 500)]
    golds = [
        Point("CAM_FRONT", 105, 108),  # L1 13 < 16 from the first prediction: a match
        Point("CAM_BACK", 100, 100),  # same numbers, other camera: never a match
        Point("CAM_FRONT", 300, 300),
    ]
    # 1 match: precision 1/2, recall 1/3, F1 = 2 * (1/6) / (5/6) = 0.4
    assert point_match_f1(preds, golds) == pytest.approx(0.4)
    # two predictions near one gold point: only one can take it; P 1/2, R 1, F1 2/3
    near = [Point("CAM_FRONT", 100, 100), Point("CAM_FRONT", 101, 101)]
    assert point_match_f1(near, [Point("CAM_FRONT", 100, 100)]) == pytest.approx(2 / 3)
    assert point_match_f1([Point("CAM_FRONT", 0, 0)], [Point("CAM_FRONT", 10, 6)]) == 0.0  # 16
    assert point_match_f1([], [Point("CAM_FRONT", 0, 0)]) == 0.0
    assert point_match_f1([], []) == 1.0


def drivelm(text: str, choice: str | None = None, *objects: tuple[Any, float, float]) -> Any:
    refs = [{"tag": f"c{n}", "camera": c, "x": x, "y": y} for n, (c, x, y) in enumerate(objects)]
    return {"kind": "drivelm", "text": text, "choice": choice, "objects": refs}


def test_score_drivelm_accepts_text_answers_and_scores_points() -> None:
    golds = [Point("CAM_FRONT", 100, 100), Point("CAM_BACK", 10, 10), Point("CAM_FRONT", 300, 3)]
    located = DriveLMLabel(answer="3 cars.", objects=[p._asdict() for p in golds])
    # one point matches (L1 8), one is far, one names no camera (malformed: skipped)
    two_cars = drivelm("2 cars.", None, ("CAM_FRONT", 104, 104), ("CAM_FRONT", 900, 9), (7, 1, 1))
    pairs = [
        (DriveLMLabel(answer="A", choice="A"), message(drivelm("A.", "A"))),
        (located, message(two_cars)),
        (DriveLMLabel(answer="No."), message({"kind": "text", "text": "no"})),
    ]
    # exact: items 1 and 3 of 3; choice: item 1 of 1; match: F1 0.4 on the one located item
    assert score_task("drivelm", "driving", pairs) == pytest.approx(
        {"exact_match": 2 / 3, "choice_accuracy": 1.0, "match_f1": 0.4}
    )


def bdd(speed: float | None, angle: float | None = None) -> dict[str, Any]:
    speed_q = None if speed is None else {"value": speed, "unit": "m/s"}
    angle_q = None if angle is None else {"value": angle, "unit": "deg"}
    return {"kind": "bdd", "speed": speed_q, "turning_angle": angle_q}


def test_score_bdd_rmse_over_predictions_thresholds_over_all() -> None:
    pairs = [
        (BDDLabel(speed=10.0, turning_angle=0.0), message(bdd(10.3, 0.05))),
        (BDDLabel(speed=10.0), message(bdd(9.0))),
        (BDDLabel(speed=10.0, turning_angle=2.0), message(None, status="unparsed")),
        (BDDLabel(speed=10.0), message({"kind": "text", "text": "10 m/s"})),  # untyped: none
        (BDDLabel(action="Go."), None),  # dead-lettered; no control label: not counted
    ]
    got = score_task("bdd", "driving", pairs)
    # speed: errors 0.3, -1 then two missing; RMSE over the two = sqrt((0.09 + 1) / 2)
    assert got["speed_rmse"] == pytest.approx(math.sqrt(1.09 / 2))
    assert [got[f"speed_acc@{t}"] for t in (0.1, 0.5, 1.0, 5.0)] == [0.0, 0.25, 0.25, 0.5]
    assert got["angle_rmse"] == pytest.approx(0.05)  # angle: error 0.05, then one missing
    assert [got[f"angle_acc@{t}"] for t in (0.1, 0.5, 1.0, 5.0)] == [0.5] * 4
    assert got["coverage"] == 0.5  # 2 of 4 speeds + 1 of 2 angles = 3 of 6
    assert score_task("bdd", "driving", [(BDDLabel(action="Go."), None)]) == {}


def test_score_one_answer_tasks_with_typed_untyped_and_unparsed_answers() -> None:
    vqa = [
        (AnswerLabel(answer="yes"), message({"kind": "yes_no", "value": True})),
        (AnswerLabel(answer="rural"), message({"kind": "text", "text": "Rural."})),
        (AnswerLabel(answer="yes"), message({"kind": "text", "text": "no"})),
        (AnswerLabel(answer="yes"), message({"kind": "text", "text": "yes"}, status="unparsed")),
    ]
    assert score_task("vqa", "remote_sensing", vqa) == {"exact_match": 0.5}
    assert score_task("vqa", "medical", vqa[:2]) == {"exact_match": 1.0}
    classify = [
        (ClassLabel(label="river"), message({"kind": "label", "label": "River"})),
        (ClassLabel(label="river"), message({"kind": "text", "text": "river"})),  # not typed
    ]
    assert score_task("classify", "remote_sensing", classify) == {"accuracy": 0.5}
    choice = [
        (LetterLabel(letter="B"), message({"kind": "choice", "letter": "B", "option": "Nodule"})),
        (LetterLabel(letter="B"), message({"kind": "text", "text": "B"})),
        (LetterLabel(letter="B"), None),
    ]
    assert score_task("choice", "medical", choice) == {"accuracy": pytest.approx(1 / 3)}
    caption = [(CaptionLabel(caption="A river."), message({"kind": "text", "text": "a river"}))]
    assert score_task("caption", "remote_sensing", caption) == {"exact_match": 1.0}


def test_score_ground_survives_malformed_boxes_and_score_task_checks_its_input() -> None:
    def boxes(*corners: Any) -> dict[str, Any]:
        keys = ("x1", "y1", "x2", "y2")
        return {"kind": "boxes", "boxes": [dict(zip(keys, c, strict=True)) for c in corners]}

    label = GroundLabel(boxes=[(0.0, 0.0, 9.0, 9.0)])
    pairs = [
        (label, message(boxes((0, 0, 9, 9)))),
        (label, message(boxes((5, 5, 14, 14)))),  # IoU 25/175
        (label, message(boxes((0, 0, "9", 9)))),  # not four numbers: no box
        (label, message({"kind": "boxes", "boxes": []})),
        (label, message({"kind": "text", "text": "[[0, 0, 9, 9]]"})),
    ]
    assert score_task("ground", "remote_sensing", pairs) == {"acc@0.5": 0.2}
    assert score_task("vqa", "medical", []) == {}
    with pytest.raises(ValueError, match="no metrics for medical/ground"):
        score_task("ground", "medical", [])
    with pytest.raises(TypeError):
        score_task("ground", "remote_sensing", [(AnswerLabel(answer="x"), None)])


def test_sample_set_requests_are_the_examples_so_its_labels_still_apply() -> None:
    for item in load_dataset(SAMPLE):  # one item per task, from schemas/examples/DOMAIN.TASK.json
        example = json.loads((SAMPLE.parent / f"{item.domain}.{item.task_type}.json").read_text())
        relabel = f"line {item.line}: its labels describe an older example; relabel it"
        assert item.payload == example | {"event_id": item.event_id}, relabel


def test_dataset_errors_name_the_line_and_the_problem(tmp_path: Path) -> None:
    good = json.loads(SAMPLE.read_text().splitlines()[6])  # medical/choice, label {"letter": "B"}

    def load(*lines: Any) -> None:
        text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
        parse_dataset(text, "set.jsonl")

    with pytest.raises(PocketvlError, match=r"set\.jsonl line 3: not valid JSON"):
        load(good, "", "{oops")  # blank lines count in the numbering
    with pytest.raises(PocketvlError, match=r"line 2: event_id '.+' is already used on line 1"):
        load(good, good)
    with pytest.raises(PocketvlError, match=r"line 1: a medical/choice label: label\.letter"):
        load({**good, "label": {"answer": "B"}})
    with pytest.raises(PocketvlError, match=r"line 1: label\.letter 'E' is not one of A, B"):
        load({**good, "label": {"letter": "E"}})
    with pytest.raises(PocketvlError, match=r"line 1: request\..*task"):
        load({**good, "request": {**good["request"], "task": {"type": "segment"}}})
    with pytest.raises(PocketvlError, match=r"line 1: label: Field required"):
        load({"request": good["request"]})
    with pytest.raises(PocketvlError, match=r"line 1: expected an object"):
        load("[1, 2]")
    with pytest.raises(PocketvlError, match="no items"):
        load("", "  ")
    with pytest.raises(PocketvlError, match="cannot read the eval set"):
        load_dataset(tmp_path / "absent.jsonl")


def test_task_results_count_outcomes_and_render() -> None:
    items = load_dataset(SAMPLE)  # the shipped sample set: one item per task
    ids = {(i.domain, i.task_type): i.event_id for i in items}
    rs_vqa, choice = ids["remote_sensing", "vqa"], ids["medical", "choice"]
    vqa = ids["medical", "vqa"]
    answers = {rs_vqa: message({"kind": "yes_no", "value": True}, event_id=rs_vqa)}
    answers[choice] = message(None, status="unparsed", event_id=choice)
    answers[vqa] = message({"kind": "text", "text": "yes"}, event_id=vqa)
    results = task_results(items, answers, dead_lettered={ids["remote_sensing", "ground"], vqa})
    by_task = {(r.domain, r.task): r for r in results}
    assert [(r.domain, r.task) for r in results] == sorted(ids)  # one row per task, sorted
    assert [r.n for r in results] == [1] * 8
    chosen, ground = by_task["medical", "choice"], by_task["remote_sensing", "ground"]
    assert (chosen.answered, chosen.unparsed, chosen.metrics) == (1, 1, {"accuracy": 0.0})
    assert (ground.dead_lettered, ground.missing, ground.models) == (1, 0, [])
    assert by_task["medical", "vqa"].dead_lettered == 0  # its answer wins over the DLQ record
    assert by_task["remote_sensing", "vqa"].metrics == {"exact_match": 1.0}
    report = EvalReport("set.jsonl", "t0", "t1", 5.0, results)
    assert (report.n, report.accounted) == (8, 4)
    assert only_tiny_models(report)
    assert not only_tiny_models(EvalReport("set.jsonl", "t0", "t1", 5.0, results[:1]))
    table = render_table(report).splitlines()
    assert table[0] == "eval of set.jsonl at t0: 4/8 requests accounted for"
    columns = "domain task model n answered dlq unparsed missing metrics"
    assert table[2].split() == columns.split()
    row = "medical choice internvl2_tiny_qwen2 1 1 0 1 0 accuracy=0.000"
    assert table[6].split() == row.split()
    assert json.loads(to_json(report))["results"][2]["models"] == [TINY]


def test_requests_are_tagged_and_only_this_runs_outcomes_are_taken() -> None:
    item = parse_dataset(SAMPLE.read_text())[2]  # remote_sensing/vqa, key tile-2
    record = runner.request_record("p", item, "run-1")
    assert (record.topic, record.key) == ("p.remote_sensing.requests", b"tile-2")
    assert json.loads(record.value) == item.payload
    assert {("ce_id", item.event_id.encode()), (runner.RUN_HEADER, b"run-1")} <= set(record.headers)
    low = Settings(  # no broker: the size is checked before connecting
        kafka=KafkaSettings(max_message_bytes=1024),
        limits=LimitSettings(max_inline_image_bytes=1024),
    )
    with pytest.raises(PocketvlError, match=r"line 3: the request is \d+ bytes, over kafka"):
        runner.publish_requests(low, [item], "run-1")

    def outcome(topic: str, value: bytes, run: bytes | None = b"run-1") -> InboundRecord:
        headers = [(runner.RUN_HEADER, run)] if run is not None else []
        return InboundRecord(topic, 0, 0, None, value, headers)

    answers: dict[str, dict[str, Any]] = {}
    dead: set[str] = set()
    for record_in in (
        outcome("p.medical.answers", json.dumps({"event_id": "a", "status": "ok"}).encode()),
        outcome("p.medical.answers", json.dumps({"event_id": "a", "n": 2}).encode()),  # repeat
        outcome("p.medical.answers", json.dumps({"event_id": "b"}).encode(), b"run-0"),
        outcome("p.medical.dlq", json.dumps({"event_id": "c"}).encode(), None),
        outcome("p.medical.dlq", b"\xff not json"),
        outcome("p.medical.answers", json.dumps({"event_id": "zz"}).encode()),
    ):
        runner.account_record(record_in, "run-1", {"a", "b", "c"}, answers, dead)
    assert answers == {"a": {"event_id": "a", "status": "ok"}}
    assert dead == {"c"}
