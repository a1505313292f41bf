"""``pocketvl models verify``: is this directory a checkpoint pocketvl can serve?

Checks the files, the config, the tokenizer, and every tensor's name and shape against the
architecture the config describes, without loading the weights (headers only, meta tensors),
so a 4B checkpoint is verified in seconds and no memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from pocketvl.errors import PocketvlError
from pocketvl.serving.checkpoint import (
    CheckpointError,
    check_state,
    convert_state_dict,
    native_config,
    read_checkpoint_info,
)
from pocketvl.serving.tokenization import load_tokenizer
from pocketvl.vision.templates import IMG_CONTEXT

TOKENIZER_FILES = (("vocab.json", "merges.txt"), ("tokenizer.model",))


def _check_files(path: Path) -> list[Path]:
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise CheckpointError("no *.safetensors weights (.bin checkpoints are not supported)")
    if not any(all((path / f).is_file() for f in group) for group in TOKENIZER_FILES):
        raise CheckpointError("no tokenizer files (vocab.json + merges.txt, or tokenizer.model)")
    if not (path / "tokenizer_config.json").is_file():
        raise CheckpointError("no tokenizer_config.json")
    return weights


def _meta_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                if name in tensors:
                    raise CheckpointError(f"tensor {name} appears in two weight files")
                shape = handle.get_slice(name).get_shape()
                tensors[name] = torch.empty(shape, device="meta")
    return tensors


def _architecture_state(config: Any) -> dict[str, torch.Tensor]:
    from transformers import InternVLForConditionalGeneration

    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    state = dict(model.state_dict())
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    return state


def verify_checkpoint(path: Path) -> list[str]:
    """Lines describing what was checked; raises PocketvlError naming the first problem."""
    try:
        files = _check_files(path)
        info = read_checkpoint_info(path)
        tokenizer = load_tokenizer(info)
        config = native_config(info, int(tokenizer.get_vocab()[IMG_CONTEXT]))
        state = convert_state_dict(_meta_tensors(files), info)
        if config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        check_state(state, _architecture_state(config))
    except (CheckpointError, OSError, ValueError) as exc:
        raise PocketvlError(f"{path} cannot be served: {exc}") from exc
    params = sum(t.numel() for t in state.values())
    size_gb = sum(f.stat().st_size for f in files) / 1e9
    return [
        f"files: {len(files)} weight file(s), {size_gb:.2f} GB, tokenizer present",
        f"config: {info.llm_type} LLM, template {info.template.name}, "
        f"{info.tokens_per_tile} tokens per tile, up to {info.max_dynamic_patch} tiles",
        f"tokenizer: {len(tokenizer)} tokens; InternVL and chat tokens are single ids",
        f"weights: {len(state)} tensors, {params / 1e6:.1f} M parameters, "
        "names and shapes match the architecture",
    ]
