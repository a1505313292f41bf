"""The GPU batch-size rule: weights + per-request KV cache and vision activations in a budget."""

from __future__ import annotations

import pytest

from pocketvl.modeltools import sizing
from pocketvl.modeltools.catalog import SIZES


def test_one_more_request_would_not_fit_the_budget() -> None:
    budget = sizing.MemoryBudget(gpu_memory_gib=40, dtype="bfloat16", max_batch_size_cap=10_000)
    shape = sizing.SHAPES["4b"]
    batch = sizing.max_batch_size(budget, "4b", max_tiles=12)
    one = sizing.per_request_bytes(shape, 2, 13, 64, 128)
    free = 40 * sizing.GIB * 0.9 - shape.parameters * 2 - 1 * sizing.GIB
    assert batch * one <= free < (batch + 1) * one


def test_the_kv_cache_per_token_is_the_llms() -> None:
    # 2 (K and V) x layers x KV heads x head dim x 2 bytes
    assert sizing.kv_bytes_per_token(sizing.SHAPES["1b"], 2) == 2 * 24 * 2 * 64 * 2
    assert sizing.kv_bytes_per_token(sizing.SHAPES["4b"], 2) == 2 * 32 * 32 * 96 * 2


def test_more_tiles_float32_and_shared_gpus_all_shrink_the_batch() -> None:
    base = sizing.MemoryBudget(gpu_memory_gib=80, max_batch_size_cap=10_000)
    drivelm = sizing.max_batch_size(base, "2b", max_tiles=12)
    assert sizing.max_batch_size(base, "2b", max_tiles=6) > drivelm
    f32 = sizing.MemoryBudget(gpu_memory_gib=80, dtype="float32", max_batch_size_cap=10_000)
    assert sizing.max_batch_size(f32, "2b", max_tiles=12) < drivelm
    two = sizing.MemoryBudget(gpu_memory_gib=80, instances_per_gpu=2, max_batch_size_cap=10_000)
    assert sizing.max_batch_size(two, "2b", max_tiles=12) < drivelm


def test_a_clip_counts_its_frames_and_an_image_its_thumbnail() -> None:
    assert sizing.request_tiles(12) == 13
    assert sizing.request_tiles(1) == sizing.FRAMES_PER_CLIP


def test_a_gpu_too_small_for_one_request_is_refused_with_what_to_change() -> None:
    with pytest.raises(sizing.SizingError, match="fewer instances per GPU"):
        sizing.max_batch_size(sizing.MemoryBudget(gpu_memory_gib=8), "4b", max_tiles=12)


def test_the_cap_bounds_a_small_model_on_a_large_gpu() -> None:
    budget = sizing.MemoryBudget(gpu_memory_gib=141, max_batch_size_cap=32)
    assert sizing.max_batch_size(budget, "1b", max_tiles=12) == 32


def test_the_shapes_are_the_full_size_architectures() -> None:
    from pocketvl.serving.full_size import VISION_300M, full_size_config

    for size, shape in sizing.SHAPES.items():
        llm = full_size_config(size)["llm_config"]
        heads = llm["num_attention_heads"]
        assert (
            shape.llm_layers,
            shape.llm_hidden,
            shape.llm_intermediate,
            shape.kv_heads,
            shape.head_dim,
            shape.vocab,
        ) == (
            llm["num_hidden_layers"],
            llm["hidden_size"],
            llm["intermediate_size"],
            llm["num_key_value_heads"],
            llm["hidden_size"] // heads,
            llm["vocab_size"],
        )
        assert (shape.vit_layers, shape.vit_hidden, shape.vit_intermediate, shape.vit_heads) == (
            VISION_300M["num_hidden_layers"],
            VISION_300M["hidden_size"],
            VISION_300M["intermediate_size"],
            VISION_300M["num_attention_heads"],
        )
        # weights: the hub's bf16 files at 2 bytes a parameter
        assert shape.parameters * 2 == pytest.approx(SIZES[size][2] * 1e9, rel=0.01)  # type: ignore[index]
