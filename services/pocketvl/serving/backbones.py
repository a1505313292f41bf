"""The three InternVL2 LLM backbones: config translation and tensor conversion.

Each original ``llm_config`` is rebuilt field by field (never passed through wholesale: the
InternVL2 configs carry every generation default of transformers 4.37, and one unknown switch
could change the computation unnoticed) into a transformers-native config:

* Qwen2 (1B) -> ``Qwen2Config``; tensor names are already native.
* InternLM2 (2B) -> ``LlamaConfig``. InternLM2's decoder is Llama's: pre-RMSNorm, rotate-half
  rotary on q/k, GQA with query head ``i`` reading KV head ``i // g``, SiLU-gated MLP, untied
  output head. Only the names and the fused, per-KV-group ``wqkv`` differ.
* Phi-3 (4B) -> ``Phi3Config``; InternVL2-4B vendors HF Phi-3, whose names transformers keeps
  (fused ``qkv_proj`` [q | k | v] and ``gate_up_proj`` [gate | up]). Its "su" rope is
  transformers' "longrope" under the old name.

Anything we cannot reproduce exactly is refused with a CheckpointError saying why.
"""

from __future__ import annotations

from typing import Any

import torch

from pocketvl.serving.checkpoint import CheckpointError

_REQUIRED = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
)
# rope_scaling type -> the keys whose meaning is the same in the original code and here
# (e.g. a later Phi-3's `short_mscale` would replace the attention factor: not reproduced).
_ROPE_KEYS = {
    "linear": {"factor"},
    "dynamic": {"factor"},
    "su": {"short_factor", "long_factor"},
    "longrope": {"short_factor", "long_factor"},
}
_TOKENS = ("bos_token_id", "eos_token_id", "pad_token_id")


def _fields(llm: dict[str, Any]) -> dict[str, Any]:
    """The shape and token fields every backbone shares, checked."""
    missing = [key for key in _REQUIRED if llm.get(key) is None]
    if missing:
        raise CheckpointError(f"llm_config lacks {missing}")
    out = {key: llm[key] for key in _REQUIRED if key != "rope_theta"}  # rope goes separately
    out["num_key_value_heads"] = llm.get("num_key_value_heads") or llm["num_attention_heads"]
    out |= {key: llm.get(key) for key in _TOKENS}
    for key in _TOKENS:
        ids = out[key] if isinstance(out[key], list) else [out[key]]
        if any(i is not None and not 0 <= i < out["vocab_size"] for i in ids):
            raise CheckpointError(f"{key}={out[key]} is outside vocab_size={out['vocab_size']}")
    head_dim = llm["hidden_size"] // llm["num_attention_heads"]
    if llm.get("head_dim", head_dim) != head_dim:
        raise CheckpointError("head_dim differs from hidden_size / num_attention_heads")
    if llm.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"hidden_act={llm['hidden_act']!r}: these backbones use silu")
    return out


def _rope_parameters(llm: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """Translate ``rope_theta`` + ``rope_scaling``; only types that are the same math here."""
    theta = {"rope_theta": float(llm["rope_theta"])}
    scaling = llm.get("rope_scaling")
    if not scaling:
        return {"rope_type": "default", **theta}
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind not in allowed:
        raise CheckpointError(
            f"rope_scaling type {kind!r} cannot be reproduced exactly; supported: {list(allowed)}"
        )
    extra = {k: v for k, v in scaling.items() if k not in ("type", "rope_type")}
    unknown = set(extra) - _ROPE_KEYS[kind]
    if unknown:
        raise CheckpointError(f"rope_scaling keys {sorted(unknown)} cannot be reproduced exactly")
    return {"rope_type": "longrope" if kind == "su" else kind, **theta, **extra}


def text_config(llm_type: str, llm: dict[str, Any]) -> Any:
    """The transformers config equivalent to an original ``llm_config``."""
    return {"qwen2": _qwen2, "internlm2": _internlm2, "phi3": _phi3}[llm_type](llm)


def _qwen2(llm: dict[str, Any]) -> Any:
    from transformers import Qwen2Config

    if llm.get("use_sliding_window"):
        raise CheckpointError("Qwen2 use_sliding_window=true is not supported")
    return Qwen2Config(
        **_fields(llm),
        rope_parameters=_rope_parameters(llm, ()),
        use_sliding_window=False,
        tie_word_embeddings=bool(llm.get("tie_word_embeddings", False)),
    )


def _internlm2(llm: dict[str, Any]) -> Any:
    from transformers import LlamaConfig

    if llm.get("bias", False):
        raise CheckpointError("InternLM2 with bias=true is not supported (no InternVL2 uses it)")
    # InternLM2's dynamic NTK equals transformers' "dynamic" for every sequence up to
    # max_position_embeddings (both leave the base unchanged) and beyond it recomputes the base
    # from the current length with the same formula. The only difference: the original keeps the
    # stretched frequencies cached for later, shorter requests; transformers resets them.
    return LlamaConfig(
        **_fields(llm),
        rope_parameters=_rope_parameters(llm, ("linear", "dynamic")),
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=bool(llm.get("tie_word_embeddings", False)),
    )


def _phi3(llm: dict[str, Any]) -> Any:
    from transformers import Phi3Config

    fields = _fields(llm)
    if llm.get("partial_rotary_factor", 1.0) != 1.0:
        raise CheckpointError("Phi-3 partial_rotary_factor != 1 is not in the vendored code")
    window = llm.get("sliding_window")
    if window is not None and window < fields["max_position_embeddings"]:
        # Mask conventions for windows differ between code paths and versions (off by one);
        # Phi-3-mini-128k's window (262144) is longer than its context, so it never applies.
        raise CheckpointError(
            f"sliding_window={window} is shorter than the context: cannot match it exactly"
        )
    return Phi3Config(
        **fields,
        original_max_position_embeddings=llm.get(
            "original_max_position_embeddings", fields["max_position_embeddings"]
        ),
        rope_parameters=_rope_parameters(llm, ("su", "longrope")),
        sliding_window=None,
        tie_word_embeddings=bool(llm.get("tie_word_embeddings", False)),
    )


def split_grouped_wqkv(
    weight: torch.Tensor, num_heads: int, num_kv_heads: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split InternLM2's fused ``wqkv`` rows into q, k, v projections.

    Rows are grouped per KV head as [q_1 .. q_g, k, v], each ``head_dim`` rows, with
    g = num_heads / num_kv_heads. A plain split into thirds is wrong whenever g > 1.
    """
    groups = num_heads // num_kv_heads
    hidden = weight.shape[-1]
    head_dim = weight.shape[0] // (num_kv_heads * (groups + 2))
    grouped = weight.reshape(num_kv_heads, groups + 2, head_dim, hidden)
    q = grouped[:, :groups].reshape(num_heads * head_dim, hidden)
    k = grouped[:, groups].reshape(num_kv_heads * head_dim, hidden)
    v = grouped[:, groups + 1].reshape(num_kv_heads * head_dim, hidden)
    return q.contiguous(), k.contiguous(), v.contiguous()


_INTERNLM2_RENAMES = (
    ("model.tok_embeddings.", "model.embed_tokens."),
    (".attention.wo.", ".self_attn.o_proj."),
    (".feed_forward.w1.", ".mlp.gate_proj."),
    (".feed_forward.w3.", ".mlp.up_proj."),
    (".feed_forward.w2.", ".mlp.down_proj."),
    (".attention_norm.", ".input_layernorm."),
    (".ffn_norm.", ".post_attention_layernorm."),
)


def _native_name(name: str) -> str:
    """``model.x`` -> ``model.language_model.x``; ``lm_head`` stays at the top."""
    if name.startswith("model."):
        return "model.language_model." + name.removeprefix("model.")
    if name == "lm_head.weight":
        return name
    raise CheckpointError(f"unexpected tensor language_model.{name}")


def convert_llm_tensor(
    llm_type: str, name: str, tensor: torch.Tensor, llm: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Native name(s) and tensor(s) for one original ``language_model.<name>`` tensor."""
    if llm_type != "internlm2":
        return {_native_name(name): tensor}
    if name == "output.weight":
        return {"lm_head.weight": tensor}
    if name.endswith(".attention.wqkv.weight"):
        heads = int(llm["num_attention_heads"])
        kv_heads = int(llm.get("num_key_value_heads") or heads)
        parts = split_grouped_wqkv(tensor, heads, kv_heads)
        stem = _native_name(name.removesuffix(".attention.wqkv.weight"))
        return {f"{stem}.self_attn.{p}_proj.weight": t for p, t in zip("qkv", parts, strict=True)}
    for old, new in _INTERNLM2_RENAMES:
        name = name.replace(old, new)
    return {_native_name(name): tensor}
