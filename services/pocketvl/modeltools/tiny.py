"""Tiny random-weight InternVL2 checkpoints in the ORIGINAL OpenGVLab layout.

The model hub is not reachable from development and CI machines, so tests and the demo use
these: same file layout, config fields, tensor names and tokenizer files as
``OpenGVLab/Mini-InternVL2-{1B,2B,4B}-DA-*`` (Qwen2, InternLM2 or Phi-3 LLM), but a few hundred
thousand parameters. Builds are deterministic (fixed seeds, fixed corpus), so the same bytes
come out every time. Their answers are meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import save_file

from pocketvl.modeltools.tiny_tokenizers import QWEN2_SPECIALS, TOKENIZER_WRITERS, TinyTokenizer
from pocketvl.serving.full_size import VISION_300M, internvl_chat_config
from pocketvl.vision.templates import BACKBONE_TEMPLATES, Backbone

__all__ = ["BACKBONE_TEMPLATES", "QWEN2_SPECIALS", "build_tiny_checkpoint"]

_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "heads": 4}
_LLM = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "heads": 4, "kv": 2}
# Phi-3-mini is multi-head (32/32); InternLM2 and Qwen2 use GQA, which the wqkv split must handle.
_KV_HEADS = {"qwen2": 2, "internlm2": 2, "phi3": 4}
_HEAD_DIM = _LLM["hidden_size"] // _LLM["heads"]


def _init(name: str, shape: tuple[int, ...], gen: torch.Generator, backbone: str) -> torch.Tensor:
    is_norm = name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "layernorm.weight"))
    if is_norm and backbone != "qwen2" and name.startswith("language_model."):
        # Not all ones, so a swapped attention/MLP norm shows up in the layer tests.
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)
    if is_norm or (name.startswith("mlp1.0.") and name.endswith("weight")):
        return torch.ones(shape)
    if name.endswith((".ls1", ".ls2")):
        return torch.full(shape, 0.1)
    if name.endswith("bias") and "qkv" not in name:
        return torch.zeros(shape)
    return torch.randn(shape, generator=gen) * 0.05


def _vision_shapes(grid: int, llm_hidden: int) -> dict[str, tuple[int, ...]]:
    c, f, h = _VISION["hidden_size"], _VISION["intermediate_size"], llm_hidden
    shapes: dict[str, tuple[int, ...]] = {
        "vision_model.embeddings.class_embedding": (1, 1, c),
        "vision_model.embeddings.patch_embedding.weight": (c, 3, 14, 14),
        "vision_model.embeddings.patch_embedding.bias": (c,),
        "vision_model.embeddings.position_embedding": (1, grid**2 + 1, c),
    }
    for i in range(_VISION["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}"
        shapes |= {
            f"{p}.attn.qkv.weight": (3 * c, c),
            f"{p}.attn.qkv.bias": (3 * c,),
            f"{p}.attn.proj.weight": (c, c),
            f"{p}.attn.proj.bias": (c,),
            f"{p}.mlp.fc1.weight": (f, c),
            f"{p}.mlp.fc1.bias": (f,),
            f"{p}.mlp.fc2.weight": (c, f),
            f"{p}.mlp.fc2.bias": (c,),
            f"{p}.norm1.weight": (c,),
            f"{p}.norm1.bias": (c,),
            f"{p}.norm2.weight": (c,),
            f"{p}.norm2.bias": (c,),
            f"{p}.ls1": (c,),
            f"{p}.ls2": (c,),
        }
    return shapes | {
        "mlp1.0.weight": (4 * c,),
        "mlp1.0.bias": (4 * c,),
        "mlp1.1.weight": (h, 4 * c),
        "mlp1.1.bias": (h,),
        "mlp1.3.weight": (h, h),
        "mlp1.3.bias": (h,),
    }


def _layer_shapes(backbone: str, p: str) -> dict[str, tuple[int, ...]]:
    """One decoder layer's tensors under their ORIGINAL names."""
    h, f = _LLM["hidden_size"], _LLM["intermediate_size"]
    kv = _KV_HEADS[backbone] * _HEAD_DIM
    if backbone == "internlm2":
        return {
            f"{p}.attention.wqkv.weight": (h + 2 * kv, h),
            f"{p}.attention.wo.weight": (h, h),
            f"{p}.feed_forward.w1.weight": (f, h),
            f"{p}.feed_forward.w3.weight": (f, h),
            f"{p}.feed_forward.w2.weight": (h, f),
            f"{p}.attention_norm.weight": (h,),
            f"{p}.ffn_norm.weight": (h,),
        }
    if backbone == "phi3":
        return {
            f"{p}.self_attn.qkv_proj.weight": (h + 2 * kv, h),
            f"{p}.self_attn.o_proj.weight": (h, h),
            f"{p}.mlp.gate_up_proj.weight": (2 * f, h),
            f"{p}.mlp.down_proj.weight": (h, f),
            f"{p}.input_layernorm.weight": (h,),
            f"{p}.post_attention_layernorm.weight": (h,),
        }
    return {
        f"{p}.self_attn.q_proj.weight": (h, h),
        f"{p}.self_attn.q_proj.bias": (h,),
        f"{p}.self_attn.k_proj.weight": (kv, h),
        f"{p}.self_attn.k_proj.bias": (kv,),
        f"{p}.self_attn.v_proj.weight": (kv, h),
        f"{p}.self_attn.v_proj.bias": (kv,),
        f"{p}.self_attn.o_proj.weight": (h, h),
        f"{p}.mlp.gate_proj.weight": (f, h),
        f"{p}.mlp.up_proj.weight": (f, h),
        f"{p}.mlp.down_proj.weight": (h, f),
        f"{p}.input_layernorm.weight": (h,),
        f"{p}.post_attention_layernorm.weight": (h,),
    }


def _llm_shapes(backbone: str, vocab: int) -> dict[str, tuple[int, ...]]:
    h = _LLM["hidden_size"]
    embed = "tok_embeddings" if backbone == "internlm2" else "embed_tokens"
    shapes = {
        f"language_model.model.{embed}.weight": (vocab, h),
        "language_model.model.norm.weight": (h,),
    }
    if backbone == "internlm2":
        shapes["language_model.output.weight"] = (vocab, h)
    elif backbone == "phi3":
        shapes["language_model.lm_head.weight"] = (vocab, h)
    for i in range(_LLM["num_hidden_layers"]):
        shapes |= _layer_shapes(backbone, f"language_model.model.layers.{i}")
    return shapes


def _vision_config() -> dict[str, Any]:
    """InternViT-300M's config with tiny dimensions."""
    v = _VISION
    return VISION_300M | {
        "hidden_size": v["hidden_size"],
        "intermediate_size": v["intermediate_size"],
        "num_hidden_layers": v["num_hidden_layers"],
        "num_attention_heads": v["heads"],
    }


def _llm_specifics(backbone: str) -> dict[str, Any]:
    """The fields that differ per backbone, shaped like each base LLM's own config.json."""
    if backbone == "qwen2":
        return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}
    if backbone == "internlm2":
        return {
            "architectures": ["InternLM2ForCausalLM"],
            "model_type": "internlm2",
            "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config"},
            "_name_or_path": "tiny-random/internlm2-chat",
            "bias": False,
            "rope_scaling": {"type": "dynamic", "factor": 2.0},
            "attn_implementation": "eager",
        }
    half = _HEAD_DIM // 2
    return {
        "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "auto_map": {"AutoConfig": "configuration_phi3.Phi3Config"},
        "_name_or_path": "tiny-random/Phi-3-mini-128k-instruct",
        "original_max_position_embeddings": 512,  # prompts with 2+ tiles use the long factors
        "rope_scaling": {
            "type": "su",
            "short_factor": [1.0 + 0.05 * i for i in range(half)],
            "long_factor": [1.0 + 0.5 * i for i in range(half)],
        },
        "sliding_window": 16384,  # longer than the context, as 262144 is for the 128k model
        "embd_pdrop": 0.0,
        "resid_pdrop": 0.0,
        "attention_dropout": 0.0,
    }


def _llm_config(backbone: str, vocab: int, tok: TinyTokenizer) -> dict[str, Any]:
    t = _LLM
    if backbone == "qwen2":
        name, theta, eps = "tiny-random/Qwen2", 1000000.0, 1e-6
    else:
        name, theta, eps = "", 1000000.0 if backbone == "internlm2" else 10000.0, 1e-5
    config = _llm_specifics(backbone)
    config |= {"_name_or_path": config.get("_name_or_path", name), "vocab_size": vocab}
    return config | {
        "hidden_size": t["hidden_size"],
        "intermediate_size": t["intermediate_size"],
        "num_hidden_layers": t["num_hidden_layers"],
        "num_attention_heads": t["heads"],
        "num_key_value_heads": _KV_HEADS[backbone],
        "max_position_embeddings": 8192,
        "rope_theta": theta,
        "rms_norm_eps": eps,
        "hidden_act": "silu",
        "tie_word_embeddings": backbone == "qwen2",
        "bos_token_id": tok.bos_id,
        "eos_token_id": tok.eos_id,
        "pad_token_id": tok.pad_id,
    }


def _config(backbone: str, vocab: int, tok: TinyTokenizer) -> dict[str, Any]:
    template = BACKBONE_TEMPLATES[cast(Backbone, backbone)]  # checked by the caller
    return internvl_chat_config(template, _vision_config(), _llm_config(backbone, vocab, tok))


def _vocab_size(backbone: str, tokenizer_size: int) -> int:
    # Qwen2 and Phi-3 embeddings are padded to a multiple of 64 (151936, 32064); InternVL2-2B
    # resized InternLM2's to exactly its tokenizer (92553, UNCONFIRMED).
    if backbone == "internlm2":
        return tokenizer_size
    return -(-tokenizer_size // 64) * 64


def build_tiny_checkpoint(out: Path, seed: int = 0, backbone: str = "qwen2") -> Path:
    """Write a tiny InternVL2 checkpoint with the given LLM backbone into ``out``."""
    if backbone not in BACKBONE_TEMPLATES:
        raise ValueError(f"unknown backbone {backbone!r}; known: {sorted(BACKBONE_TEMPLATES)}")
    out.mkdir(parents=True, exist_ok=True)
    tok = TOKENIZER_WRITERS[backbone](out)
    vocab = _vocab_size(backbone, tok.size)
    gen = torch.Generator().manual_seed(seed)
    shapes = _vision_shapes(448 // 14, _LLM["hidden_size"]) | _llm_shapes(backbone, vocab)
    weights = {n: _init(n, shape, gen, backbone) for n, shape in sorted(shapes.items())}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = _config(backbone, vocab, tok)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [tok.stop_id], "pad_token_id": tok.pad_id}, indent=2) + "\n"
    )
    return out
