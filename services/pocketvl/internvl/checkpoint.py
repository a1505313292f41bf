"""Load OpenGVLab InternVL2 checkpoints in their ORIGINAL layout, without remote code.

The original layout is ``config.json`` (``model_type: internvl_chat`` with ``vision_config``,
``llm_config``, ``template``, ``downsample_ratio``, ``ps_version``, ...) plus safetensors
with the original tensor names (``vision_model.*``, ``mlp1.*``, ``language_model.*``).
We translate both into transformers' native ``InternVLForConditionalGeneration``.
A checkpoint we cannot serve faithfully is refused with a reason, never half-loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from pocketvl.internvl.templates import TEMPLATES, Template

SUPPORTED_LLMS = {"Qwen2ForCausalLM": "qwen2"}


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
    cfg = json.loads(config_file.read_text())
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
    from transformers import AutoConfig, InternVLConfig, InternVLVisionConfig

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
    llm = dict(cfg["llm_config"])
    llm_type = llm.pop("model_type", info.llm_type)
    for key in ("architectures", "_name_or_path", "auto_map", "transformers_version"):
        llm.pop(key, None)
    text = AutoConfig.for_model(llm_type, **llm)
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


def convert_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename original InternVL2 tensors to transformers' native names; split fused qkv."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in original.items():
        if name.startswith("vision_model."):
            new = name.removeprefix("vision_model.")
            for old, repl in _VISION_RENAMES:
                new = new.replace(old, repl)
            if ".attn.qkv." in new:
                q, k, v = tensor.chunk(3, dim=0)
                for part, t in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                    key = new.replace(".attn.qkv.", f".attention.{part}.")
                    out[f"model.vision_tower.{key}"] = t.contiguous()
                continue
            out[f"model.vision_tower.{new}"] = tensor
        elif name.startswith("mlp1."):
            prefix = name[: len("mlp1.0.")]
            if prefix not in _PROJECTOR:
                raise CheckpointError(f"unexpected projector tensor {name}")
            out[f"model.multi_modal_projector.{_PROJECTOR[prefix]}{name[len(prefix) :]}"] = tensor
        elif name.startswith("language_model.model."):
            out["model.language_model." + name.removeprefix("language_model.model.")] = tensor
        elif name == "language_model.lm_head.weight":
            out["lm_head.weight"] = tensor
        else:
            raise CheckpointError(f"unexpected tensor {name} in an InternVL2 checkpoint")
    return out


def load_original_weights(path: Path) -> dict[str, torch.Tensor]:
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path} has no *.safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(str(file)))
    return weights


def load_native_model(info: CheckpointInfo, image_token_id: int, dtype: torch.dtype) -> Any:
    """Build the native model and fill it with the converted original weights."""
    from transformers import InternVLForConditionalGeneration

    config = native_config(info, image_token_id)
    model: Any = InternVLForConditionalGeneration(config)
    state = convert_state_dict(load_original_weights(info.path))
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    expected = set(model.state_dict())
    if config.tie_word_embeddings:
        expected.discard("lm_head.weight")
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not match the architecture: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    model.load_state_dict(state, strict=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.to(dtype).eval()
