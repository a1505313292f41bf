"""Tiny random-weight InternVL2 checkpoints in the ORIGINAL OpenGVLab layout.

The model hub is not reachable from development and CI machines, so tests and the demo use
these: same file layout, config fields, tensor names and tokenizer format as
``OpenGVLab/Mini-InternVL2-1B-DA-*``, but a few hundred thousand parameters. Builds are
deterministic (fixed seeds, sorted corpus), so the same bytes come out every time.
Their answers are meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from pocketvl.internvl.templates import INTERNVL_SPECIAL_TOKENS

QWEN2_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "heads": 4}
_LLM = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "heads": 4, "kv": 2}
_CORPUS_WORDS = [
    "the",
    "car",
    "truck",
    "bus",
    "pedestrian",
    "cyclist",
    "traffic",
    "light",
    "sign",
    "lane",
    "road",
    "left",
    "right",
    "front",
    "back",
    "camera",
    "ego",
    "vehicle",
    "speed",
    "turn",
    "angle",
    "stop",
    "go",
    "straight",
    "slow",
    "fast",
    "yes",
    "no",
    "a",
    "b",
    "c",
    "d",
    "image",
    "building",
    "river",
    "forest",
    "field",
    "airport",
    "harbor",
    "ship",
    "plane",
    "tank",
    "bridge",
    "residential",
    "area",
    "urban",
    "rural",
    "scan",
    "lesion",
    "tumor",
    "organ",
    "chest",
    "lung",
    "heart",
    "brain",
    "x-ray",
    "ct",
    "mri",
    "normal",
    "abnormal",
    "is",
    "are",
    "what",
    "where",
    "which",
    "how",
    "many",
    "there",
    "object",
    "in",
    "of",
    "and",
    "to",
    "with",
    "on",
    "at",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    ".",
    ",",
    "?",
]


def _train_tokenizer(out: Path) -> int:
    """A small byte-level BPE in Qwen2's file format; returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=list(QWEN2_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [" ".join(_CORPUS_WORDS[i:] + _CORPUS_WORDS[:i]) for i in range(len(_CORPUS_WORDS))]
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(list(INTERNVL_SPECIAL_TOKENS))
    tokenizer_class: Any = Qwen2Tokenizer  # its stubs do not allow unk_token=None
    wrapped = tokenizer_class(
        tokenizer_object=tok,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=4096,
    )
    wrapped.save_pretrained(str(out))
    return int(tok.get_vocab_size())


def _init(name: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "layernorm.weight")) or (
        name.startswith("mlp1.0.") and name.endswith("weight")
    ):
        return torch.ones(shape)
    if name.endswith((".ls1", ".ls2")):
        return torch.full(shape, 0.1)
    if name.endswith("bias") and "qkv" not in name:
        return torch.zeros(shape)
    return torch.randn(shape, generator=gen) * 0.05


def _original_shapes(vocab: int, tokens_grid_dim: int) -> dict[str, tuple[int, ...]]:
    v, t = _VISION, _LLM
    c, f, h = v["hidden_size"], v["intermediate_size"], t["hidden_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "vision_model.embeddings.class_embedding": (1, 1, c),
        "vision_model.embeddings.patch_embedding.weight": (c, 3, 14, 14),
        "vision_model.embeddings.patch_embedding.bias": (c,),
        "vision_model.embeddings.position_embedding": (1, tokens_grid_dim**2 + 1, c),
    }
    for i in range(v["num_hidden_layers"]):
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
    shapes |= {
        "mlp1.0.weight": (4 * c,),
        "mlp1.0.bias": (4 * c,),
        "mlp1.1.weight": (h, 4 * c),
        "mlp1.1.bias": (h,),
        "mlp1.3.weight": (h, h),
        "mlp1.3.bias": (h,),
        "language_model.model.embed_tokens.weight": (vocab, h),
        "language_model.model.norm.weight": (h,),
    }
    kv_dim = h // t["heads"] * t["kv"]
    for i in range(t["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}"
        shapes |= {
            f"{p}.self_attn.q_proj.weight": (h, h),
            f"{p}.self_attn.q_proj.bias": (h,),
            f"{p}.self_attn.k_proj.weight": (kv_dim, h),
            f"{p}.self_attn.k_proj.bias": (kv_dim,),
            f"{p}.self_attn.v_proj.weight": (kv_dim, h),
            f"{p}.self_attn.v_proj.bias": (kv_dim,),
            f"{p}.self_attn.o_proj.weight": (h, h),
            f"{p}.mlp.gate_proj.weight": (t["intermediate_size"], h),
            f"{p}.mlp.up_proj.weight": (t["intermediate_size"], h),
            f"{p}.mlp.down_proj.weight": (h, t["intermediate_size"]),
            f"{p}.input_layernorm.weight": (h,),
            f"{p}.post_attention_layernorm.weight": (h,),
        }
    return shapes


def _config(vocab: int, eos_id: int, pad_id: int) -> dict[str, Any]:
    v, t = _VISION, _LLM
    return {
        "architectures": ["InternVLChatModel"],
        "model_type": "internvl_chat",
        "template": "Hermes-2",
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
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": v["hidden_size"],
            "intermediate_size": v["intermediate_size"],
            "num_hidden_layers": v["num_hidden_layers"],
            "num_attention_heads": v["heads"],
            "image_size": 448,
            "patch_size": 14,
            "qkv_bias": True,
            "qk_normalization": False,
            "norm_type": "layer_norm",
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu",
            "drop_path_rate": 0.1,
        },
        "llm_config": {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "_name_or_path": "tiny-random/Qwen2",
            "vocab_size": vocab,
            "hidden_size": t["hidden_size"],
            "intermediate_size": t["intermediate_size"],
            "num_hidden_layers": t["num_hidden_layers"],
            "num_attention_heads": t["heads"],
            "num_key_value_heads": t["kv"],
            "max_position_embeddings": 8192,
            "rope_theta": 1000000.0,
            "rms_norm_eps": 1e-6,
            "hidden_act": "silu",
            "tie_word_embeddings": True,
            "bos_token_id": None,
            "eos_token_id": eos_id,
            "pad_token_id": pad_id,
        },
    }


def build_tiny_checkpoint(out: Path, seed: int = 0) -> Path:
    """Write a tiny Qwen2-backbone InternVL2 checkpoint (Hermes-2 template) into ``out``."""
    from transformers import AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    _train_tokenizer(out)
    tok: Any = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    vocab = -(-len(tok) // 64) * 64  # padded like real checkpoints
    eos_id = int(tok.convert_tokens_to_ids("<|im_end|>"))
    pad_id = int(tok.convert_tokens_to_ids("<|endoftext|>"))
    gen = torch.Generator().manual_seed(seed)
    shapes = _original_shapes(vocab, 448 // 14)
    weights = {name: _init(name, shape, gen) for name, shape in sorted(shapes.items())}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(_config(vocab, eos_id, pad_id), indent=2) + "\n")
    (out / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [eos_id], "pad_token_id": pad_id}, indent=2) + "\n"
    )
    return out
