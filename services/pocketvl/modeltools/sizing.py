"""How many requests one model instance may batch on a GPU: a memory rule, pure arithmetic.

    max_batch_size = floor((budget - weights - workspace) / per_request)
    budget       = gpu_memory x memory_fraction / instances_per_gpu
    per_request  = KV cache of one sequence at the longest context the domain uses
                 + vision-encoder activations of all its tiles (they run in one call)
                 + the LLM's prefill activations and the last-token logits

The context is every tile's 256 image tokens plus ``text_tokens`` of template and question
plus the route's ``max_new_tokens``. Vision activations are an upper bound: one encoder
layer's residual, q/k/v, attention output and MLP intermediate, plus the attention scores
as if materialised (flash attention does not), per tile. Dimensions are the published
InternVL2 configs (a test checks them against ``serving.full_size``).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
TOKENS_PER_TILE = 256  # InternVL2: 1024 patches, pixel-shuffled 2x2
VIT_TOKENS = 1025  # 32 x 32 patches + the class token
FRAMES_PER_CLIP = 8  # a BDD clip's default sampled frames, one tile each


@dataclass(frozen=True)
class ModelShape:
    """What a model's memory depends on (InternViT-300M + the size's LLM)."""

    parameters: int
    llm_layers: int
    llm_hidden: int
    llm_intermediate: int
    kv_heads: int
    head_dim: int
    vocab: int
    vit_layers: int = 24
    vit_hidden: int = 1024
    vit_intermediate: int = 4096
    vit_heads: int = 16


# Parameter counts: the hub's bf16 safetensors sizes / 2 bytes (catalog.py), rounded.
SHAPES: dict[str, ModelShape] = {
    "1b": ModelShape(940_000_000, 24, 896, 4864, 2, 64, 151936),  # Qwen2-0.5B
    "2b": ModelShape(2_205_000_000, 24, 2048, 8192, 8, 128, 92553),  # InternLM2-1.8B
    "4b": ModelShape(4_150_000_000, 32, 3072, 8192, 32, 96, 32064),  # Phi-3-mini
}


class SizingError(ValueError):
    """Not even one request fits the memory budget; the message says what to change."""


@dataclass(frozen=True)
class MemoryBudget:
    gpu_memory_gib: float
    dtype: str = "bfloat16"
    memory_fraction: float = 0.9  # leave room for the CUDA context and fragmentation
    instances_per_gpu: int = 1
    workspace_gib: float = 1.0  # allocator slack, cuBLAS workspaces, pinned staging
    max_batch_size_cap: int = 64


def request_tiles(max_tiles: int) -> int:
    """Tiles in the largest request a route sends: one image at ``max_tiles`` plus its
    thumbnail, or a clip of one-tile frames when the route tiles nothing."""
    return max_tiles + 1 if max_tiles > 1 else FRAMES_PER_CLIP


def kv_bytes_per_token(shape: ModelShape, dtype_bytes: int) -> int:
    return 2 * shape.llm_layers * shape.kv_heads * shape.head_dim * dtype_bytes


def vision_bytes_per_tile(shape: ModelShape, dtype_bytes: int) -> int:
    tokens = VIT_TOKENS
    layer = tokens * (5 * shape.vit_hidden + shape.vit_intermediate) * dtype_bytes
    scores = shape.vit_heads * tokens * tokens * dtype_bytes
    pixels = 448 * 448 * 3 * (1 + 4 + dtype_bytes)  # uint8 upload, float32 normalise, cast
    return layer + scores + pixels


def per_request_bytes(
    shape: ModelShape, dtype_bytes: int, tiles: int, max_new_tokens: int, text_tokens: int
) -> int:
    context = tiles * TOKENS_PER_TILE + text_tokens + max_new_tokens
    prefill = context * (4 * shape.llm_hidden + 2 * shape.llm_intermediate) * dtype_bytes
    logits = 2 * shape.vocab * 4  # last-token logits, upcast to float32, and their argmax copy
    kv = context * kv_bytes_per_token(shape, dtype_bytes)
    return kv + tiles * vision_bytes_per_tile(shape, dtype_bytes) + prefill + logits


def max_batch_size(
    budget: MemoryBudget,
    size: str,
    max_tiles: int,
    max_new_tokens: int = 64,
    text_tokens: int = 128,
) -> int:
    """The largest batch of the route's largest requests that fits one instance's share."""
    shape, dtype_bytes = SHAPES[size], DTYPE_BYTES[budget.dtype]
    share = budget.gpu_memory_gib * GIB * budget.memory_fraction / budget.instances_per_gpu
    free = share - shape.parameters * dtype_bytes - budget.workspace_gib * GIB
    one = per_request_bytes(
        shape, dtype_bytes, request_tiles(max_tiles), max_new_tokens, text_tokens
    )
    if free < one:
        smaller = ", or bfloat16" if dtype_bytes > 2 else ""
        raise SizingError(
            f"{size} in {budget.dtype} with {request_tiles(max_tiles)} tiles per request needs "
            f"{(shape.parameters * dtype_bytes + budget.workspace_gib * GIB + one) / GIB:.1f} "
            f"GiB per instance; {share / GIB:.1f} GiB is its share: use fewer instances per "
            f"GPU or a larger GPU{smaller}"
        )
    return min(budget.max_batch_size_cap, int(free // one))
