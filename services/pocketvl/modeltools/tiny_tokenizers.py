"""Tiny tokenizers in the ORIGINAL file formats of the three InternVL2 backbones.

* Qwen2 (InternVL2-1B): byte-level BPE as ``vocab.json`` + ``merges.txt`` with the chat
  specials and InternVL tokens after the BPE vocabulary (``added_tokens.json`` and
  ``added_tokens_decoder`` in ``tokenizer_config.json``), class ``Qwen2Tokenizer``.
* InternLM2 (InternVL2-2B): sentencepiece ``tokenizer.model`` whose last six pieces are
  ``[UNUSED_TOKEN_141..146]``; ``tokenizer_config.json`` renames them to ``<|plugin|>`` ..
  ``<|im_end|>``, ``<|im_start|>`` (as the full vocabulary does at 92538..92543) and adds the
  InternVL tokens after the sentencepiece vocabulary; class ``InternLM2Tokenizer``.
* Phi-3 (InternVL2-4B): Llama-style sentencepiece ``tokenizer.model``, then Phi-3's eleven added
  tokens (``<|endoftext|>`` .. ``<|user|>``, chat tokens with ``rstrip: true``), then the InternVL
  tokens; class ``LlamaTokenizer`` with ``legacy: false``.

Training is deterministic (single thread, fixed seed, fixed corpus); sentencepiece output bytes
depend on the sentencepiece version, which is pinned.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketvl.vision.templates import INTERNVL_SPECIAL_TOKENS, SYSTEM_MESSAGE

_CORPUS_TEXT = (
    "the car truck bus pedestrian cyclist traffic light sign lane road left right front back "
    "camera ego vehicle speed turn angle stop go straight slow fast yes no a b c d image "
    "building river forest field airport harbor ship plane tank bridge residential area urban "
    "rural scan lesion tumor organ chest lung heart brain x-ray ct mri normal abnormal is are "
    "what where which how many there object in of and to with on at 0 1 2 3 4 5 6 7 8 9 . , ?"
)
QWEN2_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# InternLM2's renamed pieces [UNUSED_TOKEN_141..146], in id order (92538..92543 in full size).
INTERNLM2_CHAT = (
    *("<|plugin|>", "<|interpreter|>", "<|action_end|>", "<|action_start|>"),
    *("<|im_end|>", "<|im_start|>"),
)
# Phi-3's added tokens, in id order (32000..32010 in full size).
PHI3_ADDED = (
    *("<|endoftext|>", "<|assistant|>", *(f"<|placeholder{i}|>" for i in range(1, 5))),
    *("<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>"),
)


@dataclass(frozen=True)
class TinyTokenizer:
    """What the weight/config builder needs to know about the tokenizer it sits next to."""

    size: int  # ids 0 .. size-1 may come out of the tokenizer
    bos_id: int | None
    eos_id: int  # llm_config.eos_token_id, as the base LLM has it
    pad_id: int
    stop_id: int  # the template separator: what generation stops at


def corpus() -> list[str]:
    """Every rotation of the word list: a fixed, tiny training corpus."""
    words = _CORPUS_TEXT.split()
    return [" ".join(words[i:] + words[:i]) for i in range(len(words))]


def _added(content: str, *, special: bool = True, rstrip: bool = False) -> dict[str, Any]:
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": rstrip,
        "single_word": False,
        "special": special,
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_qwen2_tokenizer(out: Path) -> TinyTokenizer:
    """Byte-level BPE in Qwen2's original files (as InternVL2-1B ships them)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
    _write_json(out / "vocab.json", dict(sorted(vocab.items())))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    added = {t: len(vocab) + i for i, t in enumerate((*QWEN2_SPECIALS, *INTERNVL_SPECIAL_TOKENS))}
    _write_json(out / "added_tokens.json", dict(sorted(added.items())))
    extra = [*QWEN2_SPECIALS[1:], *INTERNVL_SPECIAL_TOKENS]
    specials = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    _write_json(out / "special_tokens_map.json", {"additional_special_tokens": extra, **specials})
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(i): _added(t) for t, i in added.items()},
        "additional_special_tokens": extra,
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 4096,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
        **specials,
    }
    _write_json(out / "tokenizer_config.json", config)
    im_end = added["<|im_end|>"]
    return TinyTokenizer(len(added) + len(vocab), None, im_end, added["<|endoftext|>"], im_end)


def _train_sentencepiece(vocab_size: int, extra_text: list[str]) -> Any:
    """A Llama-style BPE sentencepiece model (byte fallback, digits split, "▁" prefix)."""
    import sentencepiece as spm
    from transformers.convert_slow_tokenizer import import_protobuf

    spm.set_random_generator_seed(0)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus() + extra_text),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    proto = import_protobuf().ModelProto()  # type: ignore[no-untyped-call]
    proto.ParseFromString(buffer.getvalue())
    return proto


def _sentencepiece_meta() -> dict[str, Any]:
    return {"0": _added("<unk>"), "1": _added("<s>"), "2": _added("</s>")}


def write_internlm2_tokenizer(out: Path) -> TinyTokenizer:
    """Sentencepiece model + config shaped like internlm2-chat-1_8b's, plus InternVL tokens."""
    proto = _train_sentencepiece(394, [SYSTEM_MESSAGE])
    for number in range(141, 147):  # appended like the full model's last six pieces
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = f"[UNUSED_TOKEN_{number}]", 0.0, 4  # USER_DEFINED
    (out / "tokenizer.model").write_bytes(proto.SerializeToString())
    size = len(proto.pieces)
    chat = {size - len(INTERNLM2_CHAT) + i: t for i, t in enumerate(INTERNLM2_CHAT)}
    internvl = {size + i: t for i, t in enumerate(INTERNVL_SPECIAL_TOKENS)}
    decoder = _sentencepiece_meta() | {str(i): _added(t) for i, t in (chat | internvl).items()}
    config = {
        "added_tokens_decoder": decoder,
        "additional_special_tokens": [*reversed(INTERNLM2_CHAT), *INTERNVL_SPECIAL_TOKENS],
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "model_max_length": 4096,
        "pad_token": "</s>",
        "tokenizer_class": "InternLM2Tokenizer",
        "unk_token": "<unk>",
    }
    _write_json(out / "tokenizer_config.json", config)
    im_end = size - len(INTERNLM2_CHAT) + INTERNLM2_CHAT.index("<|im_end|>")
    return TinyTokenizer(size + len(internvl), bos_id=1, eos_id=2, pad_id=2, stop_id=im_end)


def write_phi3_tokenizer(out: Path) -> TinyTokenizer:
    """Llama-style sentencepiece model + config shaped like Phi-3-mini-128k-instruct's."""
    proto = _train_sentencepiece(400, [])
    (out / "tokenizer.model").write_bytes(proto.SerializeToString())
    size = len(proto.pieces)
    decoder = _sentencepiece_meta()
    decoder["2"] = _added("</s>", special=False, rstrip=True)
    for i, token in enumerate(PHI3_ADDED):
        decoder[str(size + i)] = _added(token, rstrip=token != "<|endoftext|>")
    first_internvl = size + len(PHI3_ADDED)
    for i, token in enumerate(INTERNVL_SPECIAL_TOKENS):
        decoder[str(first_internvl + i)] = _added(token)
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": list(INTERNVL_SPECIAL_TOKENS),
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "legacy": False,
        "model_max_length": 4096,
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    _write_json(out / "tokenizer_config.json", config)
    endoftext = size  # Phi-3's <|endoftext|> (32000) is its config eos and pad
    end = size + PHI3_ADDED.index("<|end|>")
    total = first_internvl + len(INTERNVL_SPECIAL_TOKENS)
    return TinyTokenizer(total, bos_id=1, eos_id=endoftext, pad_id=endoftext, stop_id=end)


TOKENIZER_WRITERS = {
    "qwen2": write_qwen2_tokenizer,
    "internlm2": write_internlm2_tokenizer,
    "phi3": write_phi3_tokenizer,
}
