"""InternLM2 and Phi-3 backbones: the converted model computes what the ORIGINAL weights define.

The reference below is written from the original modelling code's definitions, working on the
fused tensors as stored (``wqkv`` grouped per KV head, Phi-3's [q | k | v] and [gate | up]),
with its own RMSNorm, rotate-half rotary embedding (plain, dynamic NTK, "su"/longrope) and
SiLU-gated MLP. Nothing here calls the converter's helpers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional

from pocketvl.modeltools.tiny import build_tiny_checkpoint
from pocketvl.serving.checkpoint import load_native_model, load_original_weights
from pocketvl.serving.checkpoint import read_checkpoint_info as read_info
from pocketvl.serving.engine import InternVLEngine
from pocketvl.vision.templates import build_prompt

Weights = dict[str, torch.Tensor]
SEQ = 9


@pytest.fixture(scope="module", params=["internlm2", "phi3"])
def backbone(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = build_tiny_checkpoint(tmp_path_factory.mktemp(request.param), backbone=request.param)
    info = read_info(path)
    model = load_native_model(info, image_token_id=5, dtype=torch.float32)
    llm = info.raw_config["llm_config"]
    return request.param, load_original_weights(path), model, llm


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def inverse_frequencies(llm: dict[str, Any], positions: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Per-pair rotary frequencies and cos/sin scale, as the original rotary classes set them."""
    hidden, heads = llm["hidden_size"], llm["num_attention_heads"]
    dim = hidden // heads
    base, seq_len = float(llm["rope_theta"]), int(positions.max()) + 1
    scaling = llm.get("rope_scaling") or {}
    exponents = torch.arange(0, dim, 2).float() / dim
    if scaling.get("type") == "dynamic" and seq_len > llm["max_position_embeddings"]:
        factor, max_pos = scaling["factor"], llm["max_position_embeddings"]
        base *= ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
    if scaling.get("type") == "su":
        original = llm["original_max_position_embeddings"]
        key = "long_factor" if seq_len > original else "short_factor"
        ext = torch.tensor(scaling[key])
        ratio = llm["max_position_embeddings"] / original
        scale = math.sqrt(1 + math.log(ratio) / math.log(original))
        return 1.0 / (ext * base**exponents), scale
    return 1.0 / (base**exponents), 1.0


def rotate(x: torch.Tensor, llm: dict[str, Any], positions: torch.Tensor) -> torch.Tensor:
    """Rotate-half rotary embedding on (batch, heads, seq, head_dim)."""
    inv, scale = inverse_frequencies(llm, positions)
    angles = positions[:, None].float() * inv[None, :]
    emb = torch.cat([angles, angles], dim=-1)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * emb.cos() * scale + rotated * emb.sin() * scale


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal softmax attention; q is (b, heads, s, d), k/v (b, kv_heads, s, d)."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    causal = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril()
    out = scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def internlm2_qkv(x: torch.Tensor, wqkv: torch.Tensor, llm: dict[str, Any]) -> tuple[Any, ...]:
    """InternLM2Attention: 'b q (h gs d) -> b q h gs d', gs = g + 2: q = first g; then k, v."""
    kv_heads = llm["num_key_value_heads"]
    g = llm["num_attention_heads"] // kv_heads
    d = llm["hidden_size"] // llm["num_attention_heads"]
    b, s, _ = x.shape
    qkv = (x @ wqkv.T).view(b, s, kv_heads, g + 2, d)
    q = qkv[:, :, :, :g].reshape(b, s, kv_heads * g, d)
    return tuple(t.transpose(1, 2) for t in (q, qkv[:, :, :, g], qkv[:, :, :, g + 1]))


def split_qkv(x: torch.Tensor, fused: torch.Tensor, llm: dict[str, Any]) -> tuple[Any, ...]:
    """Rows taken as [q (heads*d) | k (kv*d) | v (kv*d)]: Phi-3's layout (wrong for InternLM2)."""
    d = llm["hidden_size"] // llm["num_attention_heads"]
    kv_rows = llm["num_key_value_heads"] * d
    b, s, _ = x.shape
    weights = torch.split(fused, [llm["hidden_size"], kv_rows, kv_rows])
    return tuple((x @ w.T).view(b, s, -1, d).transpose(1, 2) for w in weights)


def reference_attention(kind: str, w: Weights, i: int, h: torch.Tensor, llm: Any, pos: Any) -> Any:
    p = f"language_model.model.layers.{i}."
    if kind == "internlm2":
        q, k, v = internlm2_qkv(h, w[p + "attention.wqkv.weight"], llm)
        out_w = w[p + "attention.wo.weight"]
    else:
        q, k, v = split_qkv(h, w[p + "self_attn.qkv_proj.weight"], llm)
        out_w = w[p + "self_attn.o_proj.weight"]
    return attend(rotate(q, llm, pos), rotate(k, llm, pos), v) @ out_w.T


def reference_mlp(kind: str, w: Weights, i: int, h: torch.Tensor) -> torch.Tensor:
    p = f"language_model.model.layers.{i}."
    if kind == "internlm2":  # w2(silu(w1 x) * w3 x)
        gate, up = h @ w[p + "feed_forward.w1.weight"].T, h @ w[p + "feed_forward.w3.weight"].T
        return (functional.silu(gate) * up) @ w[p + "feed_forward.w2.weight"].T
    gate, up = (h @ w[p + "mlp.gate_up_proj.weight"].T).chunk(2, dim=-1)  # [gate | up]
    return (up * functional.silu(gate)) @ w[p + "mlp.down_proj.weight"].T


def norm_names(kind: str) -> tuple[str, str]:
    if kind == "internlm2":
        return "attention_norm", "ffn_norm"
    return "input_layernorm", "post_attention_layernorm"


def reference_logits(kind: str, w: Weights, llm: Any, ids: torch.Tensor) -> torch.Tensor:
    """The whole original LLM: embed, pre-norm residual layers, final norm, output head."""
    embed = "tok_embeddings" if kind == "internlm2" else "embed_tokens"
    head = "output" if kind == "internlm2" else "lm_head"
    eps, pos = llm["rms_norm_eps"], torch.arange(ids.shape[1])
    x = functional.embedding(ids, w[f"language_model.model.{embed}.weight"])
    attn_norm, mlp_norm = norm_names(kind)
    for i in range(llm["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        h = rms_norm(x, w[p + attn_norm + ".weight"], eps)
        x = x + reference_attention(kind, w, i, h, llm, pos)
        x = x + reference_mlp(kind, w, i, rms_norm(x, w[p + mlp_norm + ".weight"], eps))
    x = rms_norm(x, w["language_model.model.norm.weight"], eps)
    return x @ w[f"language_model.{head}.weight"].T


def _inputs(hidden: int, seed: int) -> torch.Tensor:
    return torch.randn(1, SEQ, hidden, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("start", [0, 600, 9000], ids=["short", "past-original", "past-max"])
def test_attention_matches_the_fused_original_weights(backbone: Any, start: int) -> None:
    # 600 > Phi-3's original_max_position_embeddings (512): long factors; 9000 > 8192: NTK.
    kind, w, model, llm = backbone
    lm = model.model.language_model
    h = _inputs(llm["hidden_size"], 1)
    pos = torch.arange(start, start + SEQ)
    expected = reference_attention(kind, w, 0, h, llm, pos)
    with torch.no_grad():
        cos_sin = lm.rotary_emb(h, pos[None])
        got = lm.layers[0].self_attn(h, position_embeddings=cos_sin, attention_mask=None)[0]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_mlp_matches_the_fused_original_weights(backbone: Any) -> None:
    kind, w, model, llm = backbone
    h = _inputs(llm["hidden_size"], 2)
    with torch.no_grad():
        got = model.model.language_model.layers[1].mlp(h)
    torch.testing.assert_close(got, reference_mlp(kind, w, 1, h), rtol=1e-5, atol=1e-6)


def test_whole_llm_matches_the_original_definition(backbone: Any) -> None:
    kind, w, model, llm = backbone
    ids = torch.randint(0, llm["vocab_size"], (1, SEQ), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = model.model.language_model(input_ids=ids).last_hidden_state
        logits = model.lm_head(got)
    torch.testing.assert_close(logits, reference_logits(kind, w, llm, ids), rtol=1e-4, atol=1e-5)


def test_a_naive_thirds_split_of_wqkv_would_be_caught(tmp_path: Path) -> None:
    kind, path = "internlm2", build_tiny_checkpoint(tmp_path, backbone="internlm2")
    w, llm = load_original_weights(path), read_info(path).raw_config["llm_config"]
    assert llm["num_attention_heads"] // llm["num_key_value_heads"] > 1  # the case that matters
    h, pos = _inputs(llm["hidden_size"], 4), torch.arange(SEQ)
    q, k, v = split_qkv(h, w["language_model.model.layers.0.attention.wqkv.weight"], llm)
    naive = attend(rotate(q, llm, pos), rotate(k, llm, pos), v)
    naive = naive @ w["language_model.model.layers.0.attention.wo.weight"].T
    expected = reference_attention(kind, w, 0, h, llm, pos)
    assert not torch.allclose(naive, expected, rtol=1e-2, atol=1e-3)


@pytest.fixture(scope="module")
def engine(backbone: Any, tmp_path_factory: pytest.TempPathFactory) -> InternVLEngine:
    kind = backbone[0]
    path = build_tiny_checkpoint(tmp_path_factory.mktemp(f"engine-{kind}"), backbone=kind)
    return InternVLEngine(path)


def test_engine_generates_with_each_backbone(engine: InternVLEngine) -> None:
    from PIL import Image

    image = Image.new("RGB", (896, 448), (30, 160, 90))
    first = engine.generate([image], "What is on the road?", max_new_tokens=4, max_tiles=12)
    assert first == engine.generate([image], "What is on the road?", 4, 12)
    assert 1 <= first.generated_tokens <= 4
    prompt = build_prompt(engine.info.template, "What is on the road?", [3], 256)
    assert first.prompt_tokens == len(engine.tokenizer(prompt)["input_ids"])
