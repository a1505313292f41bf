"""Tokenizers in the original file formats tokenise our prompts as InternVL2's own code would.

InternVL's ``model.chat`` tokenises the whole templated prompt in one call with the slow
tokenizer (transformers 4.37): BOS first where the tokenizer adds one, every added token as one
id, sentencepiece's "▁" and newline handling as each tokenizer class defines it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import sentencepiece as spm
from transformers.convert_slow_tokenizer import import_protobuf

from pocketvl.modeltools.tiny import build_tiny_checkpoint
from pocketvl.serving.checkpoint import CheckpointError, read_checkpoint_info
from pocketvl.serving.tokenization import load_tokenizer, template_special_tokens
from pocketvl.vision.templates import IMG_CONTEXT, INTERNVL_SPECIAL_TOKENS, build_prompt

QUESTION = "What is on the road?"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {b: build_tiny_checkpoint(root / b, backbone=b) for b in ("qwen2", "internlm2", "phi3")}


def prompt_and_tokens(path: Path) -> tuple[str, list[int], list[str], Any]:
    info = read_checkpoint_info(path)
    tokenizer = load_tokenizer(info)
    prompt = build_prompt(info.template, QUESTION, [2], tokens_per_tile=4)
    ids = tokenizer(prompt)["input_ids"]
    return prompt, ids, tokenizer.convert_ids_to_tokens(ids), tokenizer


def reference_sentencepiece_ids(path: Path, text: str) -> list[int]:
    """The slow tokenizers' algorithm restated on sentencepiece itself (see tokenization.py)."""
    cfg = json.loads((path / "tokenizer_config.json").read_text())
    added = {spec["content"]: (int(i), spec) for i, spec in cfg["added_tokens_decoder"].items()}
    legacy = cfg["tokenizer_class"] == "InternLM2Tokenizer" or cfg.get("legacy", True)
    model_proto = import_protobuf().ModelProto  # type: ignore[no-untyped-call]
    proto = model_proto.FromString((path / "tokenizer.model").read_bytes())
    proto.normalizer_spec.add_dummy_prefix &= legacy  # LlamaTokenizer(legacy=False) turns it off
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    unk = sp.encode("<unk>")

    def encode(chunk: str) -> list[int]:
        if legacy or not chunk.startswith(("▁", " ")):
            return list(sp.encode(chunk))
        return list(sp.encode("<unk>" + chunk))[len(unk) :]  # keeps a leading "▁"

    pattern = "(" + "|".join(map(re.escape, sorted(added, key=len, reverse=True))) + ")"
    chunks = re.split(pattern, text if legacy else "▁" + text)
    named = {cfg["bos_token"], cfg["eos_token"], cfg["unk_token"], cfg.get("pad_token")}
    named |= set(cfg["additional_special_tokens"])
    if not legacy and chunks[0] == "▁" and chunks[1] in named:
        chunks[0] = ""  # the "▁" is dropped only before a named/additional special token
    ids = [sp.bos_id()] if cfg.get("add_bos_token", True) else []
    eat_space = False
    for chunk in chunks:
        if chunk in added:
            ids.append(added[chunk][0])
            eat_space = added[chunk][1]["rstrip"]
            continue
        text_part, eat_space = (chunk.lstrip() if eat_space else chunk), False
        ids += encode(text_part) if text_part else []
    return ids


@pytest.mark.parametrize("backbone", ["qwen2", "internlm2", "phi3"])
def test_every_special_token_is_one_id_and_the_separator_is_the_stop_id(
    checkpoints: dict[str, Path], backbone: str
) -> None:
    path = checkpoints[backbone]
    prompt, ids, _, tokenizer = prompt_and_tokens(path)
    template = read_checkpoint_info(path).template
    for token in (*INTERNVL_SPECIAL_TOKENS[:3], *template_special_tokens(template)):
        token_id = tokenizer.convert_tokens_to_ids(token)
        assert ids.count(token_id) == prompt.count(token), token
    assert ids.count(tokenizer.convert_tokens_to_ids(IMG_CONTEXT)) == 8  # 2 tiles x 4
    stop_id = tokenizer.convert_tokens_to_ids(template.separator)
    generation = json.loads((path / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [stop_id]
    assert ids.count(stop_id) == 2  # after the system message and after the question


@pytest.mark.parametrize("backbone", ["internlm2", "phi3"])
def test_sentencepiece_prompts_match_the_original_algorithm(
    checkpoints: dict[str, Path], backbone: str
) -> None:
    prompt, ids, _, _ = prompt_and_tokens(checkpoints[backbone])
    assert ids == reference_sentencepiece_ids(checkpoints[backbone], prompt)


def test_internlm2_adds_bos_and_a_dummy_prefix_to_every_chunk(
    checkpoints: dict[str, Path],
) -> None:
    _, ids, tokens, _ = prompt_and_tokens(checkpoints["internlm2"])
    assert tokens[:3] == ["<s>", "<|im_start|>", "▁s"]  # "system": prefixed although mid-text
    after_image = tokens[tokens.index("</img>") + 1 :][:3]
    assert after_image == ["▁", "<0x0A>", "<0x57>"]  # "\nWhat": the legacy "▁" first
    assert ids[1] == 399  # <|im_start|> is the renamed last piece, [UNUSED_TOKEN_146]


def test_phi3_keeps_the_leading_space_token_and_eats_newlines_after_chat_tokens(
    checkpoints: dict[str, Path],
) -> None:
    _, _, tokens, _ = prompt_and_tokens(checkpoints["phi3"])
    # LlamaTokenizer(legacy=False) prefixes "▁" and drops it only before a *named or
    # additional* special token; <|system|> is neither in Phi-3's config.
    assert tokens[:3] == ["<s>", "▁", "<|system|>"]
    # rstrip=True on <|user|>/<|assistant|>: the template's "\n" after them disappears.
    assert tokens[tokens.index("<|user|>") + 1] == "<img>"
    assert tokens[-1] == "<|assistant|>"
    assert tokens[tokens.index("</img>") + 1] == "<0x0A>"  # no "▁" after an added token


def test_qwen2_adds_no_bos_and_round_trips(checkpoints: dict[str, Path]) -> None:
    prompt, ids, tokens, tokenizer = prompt_and_tokens(checkpoints["qwen2"])
    assert tokens[0] == "<|im_start|>"
    assert tokenizer.decode(ids) == prompt
    for name in ("vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json"):
        assert (checkpoints["qwen2"] / name).is_file()  # InternVL2-1B's files, no tokenizer.json
    assert not (checkpoints["qwen2"] / "tokenizer.json").exists()


def test_sentencepiece_decoding_restores_text(checkpoints: dict[str, Path]) -> None:
    _, _, _, tokenizer = prompt_and_tokens(checkpoints["internlm2"])
    text = "你是 InternVL?\n yes"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def _edit_tokenizer_config(src: Path, dst: Path, **changes: Any) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "tokenizer_config.json").read_text())
    config |= changes
    if "drop" in changes:  # a token the checkpoint's tokenizer never had
        decoder = config["added_tokens_decoder"]
        config["added_tokens_decoder"] = {
            i: spec for i, spec in decoder.items() if spec["content"] != changes["drop"]
        }
        extra = config["additional_special_tokens"]
        config["additional_special_tokens"] = [t for t in extra if t != changes["drop"]]
    (dst / "tokenizer_config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"drop": "<IMG_CONTEXT>"}, "IMG_CONTEXT"),
        ({"drop": "<|end|>"}, "end"),
        ({"tokenizer_class": "T5Tokenizer"}, "tokenizer_class"),
    ],
)
def test_tokenizers_that_cannot_drive_the_model_are_refused(
    checkpoints: dict[str, Path], tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    path = _edit_tokenizer_config(checkpoints["phi3"], tmp_path / "bad", **changes)
    with pytest.raises(CheckpointError, match=message):
        load_tokenizer(read_checkpoint_info(path))


def test_a_vocabulary_smaller_than_the_tokenizer_is_refused(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    path = shutil.copytree(checkpoints["internlm2"], tmp_path / "small")
    config = json.loads((path / "config.json").read_text())
    config["llm_config"]["vocab_size"] = 400  # the 9 InternVL tokens (400..408) do not fit
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="vocabulary"):
        load_tokenizer(read_checkpoint_info(path))
