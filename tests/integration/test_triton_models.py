"""The Triton models on the real local Triton: every tiny backbone, batching, token counts."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from pocketvl.adapters.triton_client import TritonInference
from pocketvl.contracts.triton import RgbImage
from pocketvl.devstack.paths import TINY_MODELS
from pocketvl.settings import Settings
from pocketvl.worker.ports import GenerationResult
from tests.support.samples import chest_xray, road_scene, satellite_tile

pytestmark = pytest.mark.integration


def rgb(data: bytes) -> RgbImage:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


# Requests of different sizes: the batcher may still group them (ragged inputs).
IMAGES = [rgb(road_scene(11)), rgb(satellite_tile(12)), rgb(chest_xray(13)), rgb(road_scene(14))]


def ask(triton: TritonInference, model: str, index: int) -> GenerationResult:
    budget = 3 + 2 * index  # per-request token budgets differ inside one batch
    return triton.generate(model, [IMAGES[index]], f"Question number {index}?", budget, 1 + index)


@pytest.mark.parametrize("model", TINY_MODELS)
def test_each_tiny_backbone_answers_with_token_counts(settings: Settings, model: str) -> None:
    triton = TritonInference(settings.triton)
    result = ask(triton, model, 1)
    assert result.model_version == "1"
    assert 1 <= result.generated_tokens <= 5
    assert result.prompt_tokens > 256  # at least one tile of image context
    triton.close()


@pytest.mark.parametrize("model", TINY_MODELS)
def test_concurrent_requests_are_batched_and_equal_to_single_runs(
    settings: Settings, model: str
) -> None:
    triton = TritonInference(settings.triton)
    alone = [ask(triton, model, i) for i in range(len(IMAGES))]
    before = _batch_sizes(triton, model)
    # Whether the dynamic batcher coalesces a round depends on arrival times on a busy
    # machine, so up to five rounds are sent; every one must equal the single runs.
    for _ in range(5):
        with ThreadPoolExecutor(max_workers=len(IMAGES)) as pool:
            together = list(pool.map(lambda i: ask(triton, model, i), range(len(IMAGES))))
        assert together == alone
        now = _batch_sizes(triton, model)
        grown = {size: n - before.get(size, 0) for size, n in now.items()}
        if any(size > 1 and n > 0 for size, n in grown.items()):
            break
    assert any(size > 1 and n > 0 for size, n in grown.items()), grown
    triton.close()


def _batch_sizes(triton: TritonInference, model: str) -> dict[int, int]:
    stats = triton.client.get_inference_statistics(model).model_stats[0]
    return {int(b.batch_size): int(b.compute_infer.count) for b in stats.batch_stats}
