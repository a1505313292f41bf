"""Full-size InternVL2 architectures with random weights, for memory and speed checks.

``full_size_config`` writes the ORIGINAL-layout ``config.json`` dict of InternVL2-1B/2B/4B with
the real dimensions (those of the published ``config.json`` files), so the same translation
code that serves real checkpoints builds the model; ``build_random_model`` then instantiates
it with transformers' random init directly in the requested dtype and device, no safetensors
involved. Values marked UNCONFIRMED below were not read from the hub configs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pocketvl.serving.checkpoint import (
    SUPPORTED_LLMS,
    CheckpointError,
    CheckpointInfo,
    checkpoint_info,
    native_config,
)
from pocketvl.vision.templates import BACKBONE_TEMPLATES, SIZE_BACKBONES

VISION_300M: dict[str, Any] = {  # InternViT-300M-448px, as the original configs spell it
    "architectures": ["InternVisionModel"],
    "model_type": "intern_vit_6b",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 448,
    "patch_size": 14,
    "qkv_bias": True,
    "qk_normalization": False,
    "norm_type": "layer_norm",
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu",
    "drop_path_rate": 0.1,
}

_QWEN2_0_5B = {  # Qwen2-0.5B-Instruct
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "vocab_size": 151936,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "use_sliding_window": False,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
}

_INTERNLM2_1_8B = {  # internlm2-chat-1_8b
    "architectures": ["InternLM2ForCausalLM"],
    "model_type": "internlm2",
    "vocab_size": 92553,  # UNCONFIRMED: 92544 + InternVL's 9 added tokens, unpadded
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,  # UNCONFIRMED (recalled from internlm2-1.8b)
    "max_position_embeddings": 32768,  # UNCONFIRMED
    "rope_theta": 1000000.0,  # UNCONFIRMED
    "rope_scaling": {"type": "dynamic", "factor": 2.0},  # UNCONFIRMED
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "bias": False,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
}

_PHI3_MINI_128K = {  # Phi-3-mini-128k-instruct
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "vocab_size": 32064,
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 131072,
    "original_max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    # Placeholders: the real 48 short/long factors are not reproduced here (random weights).
    "rope_scaling": {"type": "su", "short_factor": [1.0] * 48, "long_factor": [1.0] * 48},
    "sliding_window": 262144,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 32000,
    "pad_token_id": 32000,
}

_LLM_CONFIGS = {"qwen2": _QWEN2_0_5B, "internlm2": _INTERNLM2_1_8B, "phi3": _PHI3_MINI_128K}


def internvl_chat_config(
    template: str, vision: dict[str, Any], llm: dict[str, Any]
) -> dict[str, Any]:
    """An original-layout ``config.json`` with the values the DA fine-tunes write."""
    return {
        "architectures": ["InternVLChatModel"],
        "model_type": "internvl_chat",
        "template": template,
        "downsample_ratio": 0.5,
        "dynamic_image_size": True,
        "force_image_size": 448,
        "max_dynamic_patch": 12,
        "min_dynamic_patch": 1,
        "ps_version": "v2",
        "select_layer": -1,
        "use_thumbnail": True,
        "use_backbone_lora": 0,
        "use_llm_lora": 0,
        "vision_config": vision,
        "llm_config": llm,
    }


def full_size_config(size: str) -> dict[str, Any]:
    """The original-layout config.json dict of InternVL2-``size`` (``1b``, ``2b`` or ``4b``)."""
    if size not in SIZE_BACKBONES:
        raise ValueError(f"unknown size {size!r}; known: {sorted(SIZE_BACKBONES)}")
    backbone = SIZE_BACKBONES[size]
    llm, template = _LLM_CONFIGS[backbone], BACKBONE_TEMPLATES[backbone]
    return internvl_chat_config(
        template, dict(VISION_300M), {key: _copy(value) for key, value in llm.items()}
    )


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return list(value) if isinstance(value, list) else value


def build_random_model(
    config: dict[str, Any],
    dtype: torch.dtype,
    image_token_id: int | None = None,
    device: str | torch.device = "cpu",
) -> Any:
    """The native model for an original-layout config dict, randomly initialised.

    ``image_token_id`` defaults to the last vocabulary row: any id works for random weights; pass
    the tokenizer's ``<IMG_CONTEXT>`` id when pairing the model with a real tokenizer.
    """
    from transformers import InternVLForConditionalGeneration

    info = checkpoint_info(config, Path())
    vocab_size = int(config["llm_config"]["vocab_size"])
    if image_token_id is None:
        image_token_id = vocab_size - 1
    if not 0 <= image_token_id < vocab_size:
        raise CheckpointError(f"image token id {image_token_id} is outside the LLM vocabulary")
    native = native_config(info, image_token_id)
    with torch.device(device):  # allocate where it will run: 4B is 8 GB in bf16
        model: Any = InternVLForConditionalGeneration._from_config(  # type: ignore[no-untyped-call]
            native, dtype=dtype
        )
    return model.eval()


def build_dummy_model(
    info: CheckpointInfo,
    size: str,
    image_token_id: int,
    dtype: torch.dtype,
    device: str | torch.device = "cpu",
) -> Any:
    """Full-size ``size`` architecture with random weights, to pair with ``info``'s tokenizer.

    The tokenizer decides the token ids, so the size must use the checkpoint's LLM backbone
    (checked here) and the image token must fall inside its vocabulary (checked when built).
    """
    config = full_size_config(size)
    backbone = SUPPORTED_LLMS[config["llm_config"]["architectures"][0]]
    if backbone != info.llm_type:
        raise CheckpointError(
            f"size {size} uses a {backbone} LLM but the checkpoint's tokenizer is {info.llm_type}"
        )
    return build_random_model(config, dtype, image_token_id, device)
