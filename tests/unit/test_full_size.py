"""Full-size InternVL2 architectures with random weights: the real dimensions, no allocation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pocketvl.serving.checkpoint import CheckpointError, checkpoint_info
from pocketvl.serving.full_size import build_dummy_model, build_random_model, full_size_config

# (size, native LLM class, rope type, parameter range in billions: the model card's total)
SIZES = [
    ("1b", "Qwen2Model", "default", (0.78, 0.95)),  # card 0.9B (0.94B counting the tied head)
    ("2b", "LlamaModel", "dynamic", (2.15, 2.25)),  # card 2.2B
    ("4b", "Phi3Model", "longrope", (4.1, 4.25)),  # card 4.2B
]


@pytest.mark.parametrize(("size", "llm_class", "rope", "billions"), SIZES)
def test_full_size_configs_translate_to_the_real_architecture(
    size: str, llm_class: str, rope: str, billions: tuple[float, float]
) -> None:
    # On the meta device nothing is allocated: 4B would be 16 GB in float32.
    model = build_random_model(full_size_config(size), torch.bfloat16, device="meta")
    assert type(model.model.language_model).__name__ == llm_class
    assert model.config.text_config.rope_parameters["rope_type"] == rope
    count = sum(p.numel() for p in model.parameters()) / 1e9
    assert billions[0] <= count <= billions[1]
    vision = model.config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.intermediate_size) == (
        1024,
        24,
        4096,
    )
    assert model.config.image_seq_length == 256


@pytest.mark.parametrize("size", ["1b", "2b", "4b"])
def test_one_layer_of_each_full_size_model_runs(size: str) -> None:
    config = full_size_config(size)
    llm = config["llm_config"]
    llm |= {"num_hidden_layers": 1, "vocab_size": 512, "bos_token_id": 1, "eos_token_id": 2}
    llm["pad_token_id"] = 2 if "pad_token_id" in llm else None
    config["vision_config"]["num_hidden_layers"] = 1
    model = build_random_model(config, torch.float32)
    image_token = model.config.image_token_id
    ids = torch.tensor([[1, *[image_token] * 256, 7, 8]])
    with torch.no_grad():
        logits = model(input_ids=ids, pixel_values=torch.randn(1, 3, 448, 448)).logits
    assert logits.shape == (1, 259, 512)
    assert torch.isfinite(logits).all()


def test_dummy_model_must_share_the_checkpoint_backbone(tiny_checkpoint: Path) -> None:
    info = checkpoint_info(full_size_config("1b"), tiny_checkpoint)
    with pytest.raises(CheckpointError, match="internlm2"):
        build_dummy_model(info, "2b", image_token_id=0, dtype=torch.bfloat16)


def test_dummy_image_token_must_be_in_the_vocabulary(tiny_checkpoint: Path) -> None:
    info = checkpoint_info(full_size_config("1b"), tiny_checkpoint)
    with pytest.raises(CheckpointError, match="outside"):
        build_dummy_model(info, "1b", image_token_id=151936, dtype=torch.bfloat16, device="meta")


def test_unknown_size_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown size"):
        full_size_config("8b")
