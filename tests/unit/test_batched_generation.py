"""Batched greedy generation equals one-at-a-time generation, for every tiny backbone.

The batch mixes prompt lengths, tile counts, images per request and token budgets; the
vision encoder sees every tile of a batch in one call; tiles normalised by the engine (on
its device) carry the same bits as the host preprocessing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from pocketvl.modeltools.tiny import build_tiny_checkpoint
from pocketvl.serving.engine import GenerationRequest, InternVLEngine, normalize_tiles
from pocketvl.vision.tiling import preprocess_image, tiles_uint8
from tests.support.samples import chest_xray, road_scene, satellite_tile


def rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module", params=["qwen2", "internlm2", "phi3"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    kind = request.param
    path: Path = build_tiny_checkpoint(tmp_path_factory.mktemp(kind), backbone=kind)
    return InternVLEngine(path)


def mixed_requests() -> list[GenerationRequest]:
    road, field, chest = rgb(road_scene(11)), rgb(satellite_tile(12)), rgb(chest_xray(13))
    wide = rgb(road_scene(14, (900, 300)))
    return [
        GenerationRequest([road], "Question number 0?", 3, 1),  # 1 tile
        GenerationRequest([field], "A longer question about the fields, number 1?", 5, 2),
        GenerationRequest([chest, wide], "Two images?", 4, 3),  # 3 + 4 tiles
        GenerationRequest([wide], "Question number 3?", 7, 4),  # 3x1 grid + thumbnail
    ]


def test_a_batch_equals_each_request_run_alone(engine: InternVLEngine) -> None:
    requests = mixed_requests()
    # Prompts of 300 to 2000 tokens: for the tiny Phi-3 (longrope switch at 512 positions)
    # and InternLM2 (dynamic NTK) a naive batch would give the short requests the
    # long-context frequencies; the engine must keep them apart.
    requests.insert(2, GenerationRequest([], "Q", 3, 1))
    together = engine.generate_batch(requests)
    assert isinstance(together.pop(2), ValueError)  # fails alone, neighbours unaffected
    requests.pop(2)
    alone = [engine.generate_batch([r])[0] for r in requests]
    assert together == alone
    budgets = [r.max_new_tokens for r in requests]
    assert all(g.generated_tokens <= b for g, b in zip(alone, budgets, strict=True))  # type: ignore[union-attr]


def test_the_vision_encoder_runs_once_over_every_tile_of_a_batch(
    engine: InternVLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    tower = engine.model.model.vision_tower
    forward = tower.forward

    def counting(pixel_values: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(pixel_values.shape[0])
        return forward(pixel_values, *args, **kwargs)

    monkeypatch.setattr(tower, "forward", counting)
    requests = mixed_requests()
    engine.generate_batch(requests)
    tiles = [
        len(tiles_uint8(image, r.max_tiles, engine.info.use_thumbnail))
        for r in requests
        for image in r.images
    ]
    assert sum(calls) == sum(tiles) == 1 + 1 + (1 + 4) + 4
    if engine.rope_switch is None:  # nothing keeps these requests apart: one batch, one call
        assert calls == [sum(tiles)]
    else:  # one call per batch the RoPE regimes allow, never one per request or per image
        assert len(calls) < len(requests)


def test_tiles_normalised_on_the_device_equal_the_host_preprocessing() -> None:
    image = rgb(road_scene(3, (1600, 900)))
    tiles = torch.from_numpy(tiles_uint8(image, 6))
    expected = preprocess_image(image, 6)
    got = normalize_tiles(tiles, torch.float32).numpy()
    assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_each_row_is_done_at_its_own_budget_so_the_batch_ends_with_its_longest() -> None:
    from pocketvl.serving.engine import _RowBudgets

    done = _RowBudgets(prompt_width=5, budgets=[1, 3], device=torch.device("cpu"))
    assert done(torch.zeros(2, 6, dtype=torch.long), None).tolist() == [True, False]
    assert done(torch.zeros(2, 8, dtype=torch.long), None).tolist() == [True, True]
