"""Each domain/task through ``Pipeline.process``: composition sent to the model, typed answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from PIL import Image

from pocketvl.domains.compose import prepare_inputs
from tests.support.examples import example
from tests.support.fakes import ScriptedInference
from tests.support.pipelines import make_pipeline, published, record


def run(task_example: str, text: str) -> tuple[dict[str, Any], ScriptedInference]:
    inference = ScriptedInference(text=text)
    domain = task_example.split(".", maxsplit=1)[0]
    out = published(make_pipeline(inference), record(example(task_example), domain=domain))
    assert out.topic == f"pocketvl.{domain}.answers", dict(out.headers).get("dlq.exception.message")
    return json.loads(out.value), inference


def sent_images(inference: ScriptedInference) -> list[Image.Image]:
    return [Image.fromarray(pixels) for pixels in inference.images[0]]


def test_drivelm_cameras_are_stitched_and_references_mapped_back_per_camera() -> None:
    answer, inference = run("driving.drivelm", "A car <c1,CAM_FRONT,[500,250]> is ahead.")
    (stitched,) = sent_images(inference)
    assert (stitched.mode, stitched.size) == ("RGB", (2688, 896))
    obj = answer["answer"]["objects"][0]
    # (500/1000*2688 - 896)/896 * 320 = 160.0 ; (250/1000*896)/448 * 180 = 90.0 (camera is 320x180)
    assert (obj["camera"], obj["x"], obj["y"]) == ("CAM_FRONT", 160.0, 90.0)
    assert answer["status"] == "ok"


def test_bdd_frames_are_one_tile_each_and_control_signals_parsed() -> None:
    answer, inference = run("driving.bdd", "Speed: 5.2; Turn angle: -3.1")
    _, n_images, question, _, max_tiles = inference.calls[0]
    assert n_images == 4
    assert question.startswith(
        "Frame1: <image>\nFrame2: <image>\nFrame3: <image>\nFrame4: <image>\n"
    )
    assert max_tiles == 1
    assert answer["answer"]["speed"] == {"value": 5.2, "unit": "m/s"}
    assert answer["answer"]["turning_angle"] == {"value": -3.1, "unit": "deg"}


def test_multiband_tiff_is_stretched_to_rgb_and_classified() -> None:
    answer, inference = run("remote_sensing.classify", "River.")
    (image,) = sent_images(inference)
    assert (image.mode, image.size) == ("RGB", (96, 96))
    assert answer["answer"] == {"kind": "label", "label": "river"}


def test_grounding_boxes_come_back_in_original_pixels() -> None:
    answer, _ = run("remote_sensing.ground", "<ref>the river</ref><box>[[0, 250, 1000, 500]]</box>")
    box = answer["answer"]["boxes"][0]
    assert (box["x1"], box["y1"], box["x2"], box["y2"]) == (0.0, 64.0, 256.0, 128.0)  # 256x256


def test_dicom_is_windowed_to_8_bit_and_yes_no_normalised() -> None:
    answer, inference = run("medical.vqa", "Yes, there is a small nodule.")
    (image,) = sent_images(inference)
    assert (image.mode, image.size) == ("RGB", (128, 128))
    assert answer["answer"] == {"kind": "yes_no", "value": True}
    assert "SYNTHETIC" not in json.dumps(answer)  # identifiers never reach answers


def test_unparseable_text_is_unparsed_with_the_raw_text() -> None:
    answer, _ = run("remote_sensing.classify", "a lovely day")
    assert answer["status"] == "unparsed"
    assert answer["answer"] == {"kind": "text", "text": "a lovely day"}
    assert answer["raw_text"] == "a lovely day"


@pytest.mark.parametrize(
    ("task_example", "text"),
    [
        ("driving.drivelm", "A car <c1,CAM_FRONT,[500,250]> is ahead."),
        ("remote_sensing.ground", "<ref>the river</ref><box>[[0, 250, 1000, 500]]</box>"),
        ("driving.bdd", "Speed: 5.2; Turn angle: -3.1"),
    ],
)
def test_a_cache_hit_decodes_nothing_and_answers_the_same(
    monkeypatch: pytest.MonkeyPatch, task_example: str, text: str
) -> None:
    """The key comes from the raw images' digests; the entry keeps the original sizes the
    answer's coordinates map back to, so a hit needs no decode, stitch or tiling."""
    decodes = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        decodes.append(1)
        return prepare_inputs(*args, **kwargs)

    monkeypatch.setattr("pocketvl.worker.pipeline.prepare_inputs", counted)
    inference = ScriptedInference(text=text)
    pipeline = make_pipeline(inference)
    domain = task_example.split(".", maxsplit=1)[0]
    value = example(task_example)
    first = json.loads(published(pipeline, record(value, domain=domain)).value)
    again = {**value, "event_id": "another-event"}
    second = json.loads(published(pipeline, record(again, domain=domain)).value)
    assert (first["cache"], second["cache"]) == ("miss", "hit")
    assert len(decodes) == 1 and len(inference.calls) == 1
    assert second["answer"] == first["answer"]  # pixel coordinates included
