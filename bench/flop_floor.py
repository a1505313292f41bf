"""The compute floor of an InternVL2 request: FLOPs per tile and per token, over peak FLOP/s.

Figures from ``shared/reference/serving_and_consumption.md`` §3.2 (own arithmetic there, from
the architecture in ``internvl_facts.md`` §1): InternViT-300M is ~724 GFLOP per 448x448 tile
(linear 619 + attention 103 + patch embedding ~1.2); the ``mlp1`` projector adds 2.3 / 6.4 /
11.3 GFLOP per tile for 1B / 2B / 4B; the LLM costs 2 x its non-embedding parameters per
token (Qwen2-0.5B 358 M, InternLM2-1.8B 1.51 B, Phi-3-mini 3.62 B), prefill and decode
alike. Decode is memory-bound in practice, so real time sits above this floor.
Peak dense BF16 TFLOP/s: NVIDIA datasheet values quoted in §3.2 (A100 312, H100/H200 989),
not re-checked here; other GPUs need ``--peak-tflops``.
"""

from __future__ import annotations

VIT_GFLOP_PER_TILE = 724.0
MLP1_GFLOP_PER_TILE = {"1b": 2.3, "2b": 6.4, "4b": 11.3}
LLM_NON_EMBEDDING_PARAMS = {"1b": 358e6, "2b": 1.51e9, "4b": 3.62e9}
TOKENS_PER_TILE = 256
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def vision_flops(size: str, tiles: int) -> float:
    """InternViT + projector for ``tiles`` tiles."""
    return tiles * (VIT_GFLOP_PER_TILE + MLP1_GFLOP_PER_TILE[size]) * 1e9


def llm_flops(size: str, tokens: int) -> float:
    return 2.0 * LLM_NON_EMBEDDING_PARAMS[size] * tokens


def request_flops(size: str, tiles: int, prompt_tokens: int, new_tokens: int) -> float:
    """One request: every tile through the vision tower, then prefill and decode."""
    return vision_flops(size, tiles) + llm_flops(size, prompt_tokens + new_tokens)


def peak_tflops(device_name: str) -> float | None:
    """Dense BF16 peak for the GPUs §3.2 quotes; None for any other."""
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name.upper():
            return value
    return None


def floor_seconds(flops: float, peak: float) -> float:
    return flops / (peak * 1e12)
