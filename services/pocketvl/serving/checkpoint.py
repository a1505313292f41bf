"""Load OpenGVLab InternVL2 checkpoints in their ORIGINAL layout, without remote code.

The original layout is ``config.json`` (``model_type: internvl_chat`` with ``vision_config``,
``llm_config``, ``template``, ``downsample_ratio``, ``ps_version``, ...) plus safetensors
with the original tensor names (``vision_model.*``, ``mlp1.*``, ``language_model.*``).
We translate both into transformers' native ``InternVLForConditionalGeneration``; the
per-LLM part (Qwen2, InternLM2, Phi-3) lives in ``backbones``, tokenizers in ``tokenization``.
A checkpoint we cannot serve faithfully is refused with a reason, never half-loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from pocketvl.vision.templates import TEMPLATES, Template

# llm_config.architectures[0] -> backbone key used by backbones.py, tiny.py and tokenization.py
SUPPORTED_LLMS = {
    "Qwen2ForCausalLM": "qwen2",
    "InternLM2ForCausalLM": "internlm2",
    "Phi3ForCausalLM": "phi3",
}


class CheckpointError(ValueError):
    """This directory is not a checkpoint we can serve correctly; the message says why."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    template: Template
    llm_type: str
    raw_config: dict[str, Any]
    max_dynamic_patch: int
    use_thumbnail: bool
    tokens_per_tile: int


def _require(cfg: dict[str, Any], key: str, expected: object, why: str) -> None:
    if cfg.get(key) != expected:
        raise CheckpointError(f"{key}={cfg.get(key)!r} is not supported ({why}); need {expected!r}")


def read_checkpoint_info(path: Path) -> CheckpointInfo:
    """Parse and check an original-layout config.json."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path} has no config.json: not a checkpoint directory")
    return checkpoint_info(json.loads(config_file.read_text()), path)


def checkpoint_info(cfg: dict[str, Any], path: Path) -> CheckpointInfo:
    """Check an original-layout config dict (``path`` is where its files are, if anywhere)."""
    _require(cfg, "model_type", "internvl_chat", "only OpenGVLab InternVL2 chat checkpoints")
    _require(cfg, "ps_version", "v2", "pixel shuffle v1 transposes the token grid")
    _require(cfg, "select_layer", -1, "features must come from the last ViT layer")
    template_name = cfg.get("template")
    if template_name not in TEMPLATES:
        raise CheckpointError(f"unknown template {template_name!r}; known: {sorted(TEMPLATES)}")
    llm_arch = (cfg.get("llm_config", {}).get("architectures") or ["?"])[0]
    if llm_arch not in SUPPORTED_LLMS:
        raise CheckpointError(
            f"LLM {llm_arch} is not supported yet; supported: {sorted(SUPPORTED_LLMS)}"
        )
    from pocketvl.serving.backbones import text_config

    text_config(SUPPORTED_LLMS[llm_arch], cfg["llm_config"])  # refuse untranslatable LLMs now
    vision = cfg["vision_config"]
    patches = int(cfg.get("force_image_size", vision["image_size"])) // int(vision["patch_size"])
    tokens = int(patches * patches * float(cfg["downsample_ratio"]) ** 2)
    return CheckpointInfo(
        path=path,
        template=TEMPLATES[template_name],
        llm_type=SUPPORTED_LLMS[llm_arch],
        raw_config=cfg,
        max_dynamic_patch=int(cfg.get("max_dynamic_patch", 12)),
        use_thumbnail=bool(cfg.get("use_thumbnail", True)),
        tokens_per_tile=tokens,
    )


def native_config(info: CheckpointInfo, image_token_id: int) -> Any:
    """transformers InternVLConfig equivalent to the original config."""
    from transformers import InternVLConfig, InternVLVisionConfig

    from pocketvl.serving.backbones import text_config

    cfg = info.raw_config
    v = cfg["vision_config"]
    vision = InternVLVisionConfig(
        hidden_size=v["hidden_size"],
        intermediate_size=v["intermediate_size"],
        num_hidden_layers=v["num_hidden_layers"],
        num_attention_heads=v["num_attention_heads"],
        image_size=[v["image_size"], v["image_size"]],
        patch_size=[v["patch_size"], v["patch_size"]],
        attention_bias=bool(v.get("qkv_bias", True)),
        use_qk_norm=bool(v.get("qk_normalization", False)),
        norm_type=v.get("norm_type", "layer_norm"),
        layer_norm_eps=float(v.get("layer_norm_eps", 1e-6)),
        hidden_act=v.get("hidden_act", "gelu"),
        use_mean_pooling=True,  # no final norm on the encoder output, as in InternViT
    )
    llm = cfg["llm_config"]
    text = text_config(info.llm_type, llm)
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        image_seq_length=info.tokens_per_tile,
        downsample_ratio=float(cfg["downsample_ratio"]),
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=bool(llm.get("tie_word_embeddings", False)),
    )


_VISION_RENAMES = (
    ("embeddings.class_embedding", "embeddings.cls_token"),
    ("embeddings.position_embedding", "embeddings.position_embeddings"),
    ("embeddings.patch_embedding.", "embeddings.patch_embeddings.projection."),
    ("encoder.layers.", "encoder.layer."),
    (".ls1", ".lambda_1"),
    (".ls2", ".lambda_2"),
    (".attn.proj.", ".attention.projection_layer."),
    (".norm1.", ".layernorm_before."),
    (".norm2.", ".layernorm_after."),
)
_PROJECTOR = {"mlp1.0.": "layer_norm.", "mlp1.1.": "linear_1.", "mlp1.3.": "linear_2."}


def _convert_vision(name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    new = name.removeprefix("vision_model.")
    for old, repl in _VISION_RENAMES:
        new = new.replace(old, repl)
    if ".attn.qkv." not in new:
        return {f"model.vision_tower.{new}": tensor}
    # InternViT's fused qkv is plain [q | k | v] (no grouping: heads == kv heads).
    parts = zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True)
    return {
        "model.vision_tower." + new.replace(".attn.qkv.", f".attention.{part}."): t.contiguous()
        for part, t in parts
    }


def _convert_tensor(name: str, tensor: torch.Tensor, info: CheckpointInfo) -> dict[str, Any]:
    from pocketvl.serving.backbones import convert_llm_tensor

    if name.startswith("vision_model."):
        return _convert_vision(name, tensor)
    if name.startswith("mlp1."):
        prefix = name[: len("mlp1.0.")]
        if prefix not in _PROJECTOR:
            raise CheckpointError(f"unexpected projector tensor {name}")
        return {f"model.multi_modal_projector.{_PROJECTOR[prefix]}{name[len(prefix) :]}": tensor}
    if name.startswith("language_model."):
        llm = info.raw_config["llm_config"]
        return convert_llm_tensor(info.llm_type, name.removeprefix("language_model."), tensor, llm)
    raise CheckpointError(f"unexpected tensor {name} in an InternVL2 checkpoint")


def convert_state_dict(
    original: dict[str, torch.Tensor], info: CheckpointInfo
) -> dict[str, torch.Tensor]:
    """Rename original InternVL2 tensors to transformers' native names; split fused qkv."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in original.items():
        converted = _convert_tensor(name, tensor, info)
        clash = set(converted) & set(out)
        if clash:  # e.g. both `output` and `lm_head` in an InternLM2 checkpoint
            raise CheckpointError(f"{name} maps onto {sorted(clash)}, which is already filled")
        out |= converted
    return out


def load_original_weights(path: Path) -> dict[str, torch.Tensor]:
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path} has no *.safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(str(file)))
    return weights


def check_state(state: dict[str, torch.Tensor], model_state: dict[str, torch.Tensor]) -> None:
    """Every parameter present exactly once, with the architecture's shape."""
    missing, unexpected = set(model_state) - set(state), set(state) - set(model_state)
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not match the architecture: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    wrong = [
        f"{name} {tuple(t.shape)} != {tuple(model_state[name].shape)}"
        for name, t in sorted(state.items())
        if t.shape != model_state[name].shape
    ]
    if wrong:
        raise CheckpointError(f"tensor shapes do not match the config: {wrong[:3]}")


def load_native_model(info: CheckpointInfo, image_token_id: int, dtype: torch.dtype) -> Any:
    """Build the native model and fill it with the converted original weights."""
    from transformers import InternVLForConditionalGeneration

    config = native_config(info, image_token_id)
    if not 0 <= image_token_id < config.text_config.vocab_size:
        raise CheckpointError(f"image token id {image_token_id} is outside the LLM vocabulary")
    # Built in the target dtype (no float32 copy of a 4B model), while the rotary frequency
    # buffers stay float32 as in the original code; load_state_dict casts the weights.
    model: Any = InternVLForConditionalGeneration._from_config(  # type: ignore[no-untyped-call]
        config, dtype=dtype
    )
    state = convert_state_dict(load_original_weights(info.path), info)
    model_state = dict(model.state_dict())
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
        model_state.pop("lm_head.weight", None)
    check_state(state, model_state)
    model.load_state_dict(state, strict=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval()
