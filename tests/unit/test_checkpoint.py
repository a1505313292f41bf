"""Original-layout checkpoints: deterministic tiny builds, faithful conversion, clear refusals."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional

from pocketvl.modeltools.tiny import build_tiny_checkpoint
from pocketvl.serving.checkpoint import (
    CheckpointError,
    load_native_model,
    load_original_weights,
    read_checkpoint_info,
)
from pocketvl.serving.engine import InternVLEngine


def digests(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_tiny_build_is_byte_reproducible(tmp_path: Path, tiny_checkpoint: Path) -> None:
    assert digests(build_tiny_checkpoint(tmp_path / "again")) == digests(tiny_checkpoint)


@pytest.mark.parametrize("backbone", ["internlm2", "phi3"])
def test_other_backbones_build_byte_reproducibly(tmp_path: Path, backbone: str) -> None:
    first = build_tiny_checkpoint(tmp_path / "a", backbone=backbone)
    assert digests(build_tiny_checkpoint(tmp_path / "b", backbone=backbone)) == digests(first)
    assert (first / "tokenizer.model").is_file()  # sentencepiece, as the originals ship


@pytest.mark.parametrize(
    ("backbone", "arch", "template", "tensors"),
    [
        (
            "internlm2",
            "InternLM2ForCausalLM",
            "internlm2-chat",
            {
                "model.tok_embeddings.weight",
                "model.layers.0.attention.wqkv.weight",
                "output.weight",
            },
        ),
        (
            "phi3",
            "Phi3ForCausalLM",
            "phi3-chat",
            {"model.layers.0.self_attn.qkv_proj.weight", "model.layers.0.mlp.gate_up_proj.weight"},
        ),
    ],
)
def test_backbone_checkpoints_have_the_original_layout(
    tmp_path: Path, backbone: str, arch: str, template: str, tensors: set[str]
) -> None:
    path = build_tiny_checkpoint(tmp_path, backbone=backbone)
    info = read_checkpoint_info(path)
    assert (info.llm_type, info.template.name) == (backbone, template)
    assert info.raw_config["llm_config"]["architectures"] == [arch]
    names = {n.removeprefix("language_model.") for n in load_original_weights(path)}
    assert tensors <= names


def test_tiny_checkpoint_has_the_original_layout(tiny_checkpoint: Path) -> None:
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "internvl_chat"
    assert config["llm_config"]["architectures"] == ["Qwen2ForCausalLM"]
    assert {"template", "ps_version", "downsample_ratio", "vision_config"} <= set(config)
    names = set(load_original_weights(tiny_checkpoint))
    assert "vision_model.encoder.layers.0.attn.qkv.weight" in names
    assert "mlp1.1.weight" in names
    assert "language_model.model.embed_tokens.weight" in names


def _edited(src: Path, dst: Path, **changes: object) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    for key, value in changes.items():
        if key == "llm_arch":
            config["llm_config"]["architectures"] = [value]
        elif key.startswith("llm."):
            config["llm_config"][key.removeprefix("llm.")] = value
        else:
            config[key] = value
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ps_version": "v1"}, "ps_version"),
        ({"template": "vicuna_v1.1"}, "unknown template"),
        ({"model_type": "llava"}, "model_type"),
        ({"llm_arch": "MixtralForCausalLM"}, "not supported"),
    ],
)
def test_unservable_checkpoints_are_refused_with_a_reason(
    tmp_path: Path, tiny_checkpoint: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint_info(_edited(tiny_checkpoint, tmp_path / "bad", **change))


@pytest.mark.parametrize(
    ("backbone", "change", "message"),
    [
        ("internlm2", {"llm.rope_scaling": {"type": "yarn", "factor": 2.0}}, "rope_scaling type"),
        ("internlm2", {"llm.bias": True}, "bias"),
        ("internlm2", {"llm.hidden_act": "gelu"}, "hidden_act"),
        ("internlm2", {"llm.head_dim": 8}, "head_dim"),
        ("phi3", {"llm.rope_scaling": {"type": "yarn", "factor": 2.0}}, "rope_scaling type"),
        ("phi3", {"llm.sliding_window": 2047}, "sliding_window"),
        (
            "phi3",
            {"llm.rope_scaling": {"type": "longrope", "short_mscale": 1.2, "short_factor": [1.0]}},
            "short_mscale",
        ),
        ("phi3", {"llm.partial_rotary_factor": 0.5}, "partial_rotary_factor"),
        ("phi3", {"llm.num_hidden_layers": None}, "lacks"),
        ("qwen2", {"llm.use_sliding_window": True}, "use_sliding_window"),
        ("qwen2", {"llm.rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling type"),
    ],
)
def test_llm_configs_we_cannot_reproduce_are_refused(
    tmp_path: Path, backbone: str, change: dict[str, object], message: str
) -> None:
    src = build_tiny_checkpoint(tmp_path / "src", backbone=backbone)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint_info(_edited(src, tmp_path / "bad", **change))


LM = "language_model."
WEIGHT_EDITS: dict[str, tuple[Callable[[dict[str, torch.Tensor]], object], str]] = {
    "missing": (lambda w: w.pop(LM + "output.weight"), "missing"),
    "unexpected": (lambda w: w.update({LM + "model.x.weight": torch.zeros(4)}), "unexpected"),
    "wrong-shape": (lambda w: w.update({LM + "output.weight": torch.zeros(3, 64)}), "shapes"),
    # Qwen2/Phi-3's head name next to InternLM2's `output`: both map to lm_head
    "two-heads": (lambda w: w.update({LM + "lm_head.weight": torch.zeros(3, 64)}), "already"),
}


@pytest.mark.parametrize("case", sorted(WEIGHT_EDITS))
def test_weights_that_do_not_fit_are_refused(tmp_path: Path, case: str) -> None:
    edit, message = WEIGHT_EDITS[case]
    path = build_tiny_checkpoint(tmp_path, backbone="internlm2")
    weights = load_original_weights(path)
    edit(weights)
    save_file(weights, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=message):
        load_native_model(read_checkpoint_info(path), image_token_id=0, dtype=torch.float32)


def test_image_token_outside_the_vocabulary_is_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="outside"):
        load_native_model(read_checkpoint_info(tiny_checkpoint), 10**6, torch.float32)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        read_checkpoint_info(tmp_path)


@pytest.fixture(scope="module")
def converted(tiny_checkpoint: Path) -> tuple[dict[str, torch.Tensor], object]:
    info = read_checkpoint_info(tiny_checkpoint)
    model = load_native_model(info, image_token_id=0, dtype=torch.float32)
    return load_original_weights(tiny_checkpoint), model


def test_vision_block_matches_a_direct_computation_from_fused_weights(converted) -> None:  # type: ignore[no-untyped-def]
    w, model = converted
    p = "vision_model.encoder.layers.0."
    x = torch.randn(1, 7, 64, generator=torch.Generator().manual_seed(1))
    # InternViT block: x + ls1 * attn(norm1(x)); x + ls2 * mlp(norm2(x)); 4 heads, fused qkv.
    h = functional.layer_norm(x, (64,), w[p + "norm1.weight"], w[p + "norm1.bias"], eps=1e-6)
    q, k, v = functional.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"]).chunk(
        3, dim=-1
    )
    qh, kh, vh = (t.view(1, 7, 4, 16).transpose(1, 2) for t in (q, k, v))
    attn = functional.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(1, 7, 64)
    x1 = x + w[p + "ls1"] * functional.linear(
        attn, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"]
    )
    h = functional.layer_norm(x1, (64,), w[p + "norm2.weight"], w[p + "norm2.bias"], eps=1e-6)
    hidden = functional.gelu(functional.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"]))
    mlp = functional.linear(hidden, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
    expected = x1 + w[p + "ls2"] * mlp
    layer = model.model.vision_tower.encoder.layer[0]
    with torch.no_grad():
        got = layer(x)
    got = got[0] if isinstance(got, tuple) else got
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_projector_matches_mlp1(converted) -> None:  # type: ignore[no-untyped-def]
    w, model = converted
    x = torch.randn(2, 5, 256, generator=torch.Generator().manual_seed(2))
    h = functional.layer_norm(x, (256,), w["mlp1.0.weight"], w["mlp1.0.bias"], eps=1e-5)
    h = functional.linear(
        functional.gelu(functional.linear(h, w["mlp1.1.weight"], w["mlp1.1.bias"])),
        w["mlp1.3.weight"],
        w["mlp1.3.bias"],
    )
    with torch.no_grad():
        got = model.model.multi_modal_projector(x)
    torch.testing.assert_close(got, h, rtol=1e-5, atol=1e-5)


def test_llm_weights_are_the_originals(converted) -> None:  # type: ignore[no-untyped-def]
    w, model = converted
    torch.testing.assert_close(
        model.model.language_model.layers[1].self_attn.k_proj.weight,
        w["language_model.model.layers.1.self_attn.k_proj.weight"],
    )
    # tied embeddings: the output head is the input embedding
    assert (
        model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    )


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> InternVLEngine:
    return InternVLEngine(tiny_checkpoint)


def test_engine_generates_deterministically(engine: InternVLEngine) -> None:
    from PIL import Image

    image = Image.new("RGB", (896, 448), (30, 160, 90))
    first = engine.generate([image], "What is on the road?", max_new_tokens=6, max_tiles=12)
    again = engine.generate([image], "What is on the road?", max_new_tokens=6, max_tiles=12)
    assert first == again
    assert 1 <= first.generated_tokens <= 6
    # 2 tiles + thumbnail -> 3 * 256 context tokens, plus the template and question
    assert first.prompt_tokens > 3 * 256
    single = engine.generate([image], "What is on the road?", max_new_tokens=6, max_tiles=1)
    assert first.prompt_tokens - single.prompt_tokens == 2 * 256


def test_engine_refuses_a_request_without_images(engine: InternVLEngine) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        engine.generate([], "Q", max_new_tokens=2, max_tiles=1)
