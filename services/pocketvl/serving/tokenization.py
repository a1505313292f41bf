"""Load InternVL2 tokenizers from their ORIGINAL files without remote code.

InternVL2 was trained and is served (``model.chat``) with *slow* tokenizers loaded by
transformers 4.37: ``Qwen2Tokenizer`` (1B, byte-level BPE), the remote-code
``InternLM2Tokenizer`` (2B) and ``LlamaTokenizer`` (4B, Phi-3). The last two are sentencepiece
models, and their exact output depends on details a fast conversion does not always keep:

* InternLM2Tokenizer encodes every text chunk between added tokens with ``sp_model.encode``
  as-is, so the model's own ``add_dummy_prefix`` puts a "▁" in front of *each* chunk; it adds
  BOS (``add_bos_token`` defaults to true).
* LlamaTokenizer with ``legacy: false`` (Phi-3) switches ``add_dummy_prefix`` off, prefixes
  the whole text with "▁" once, and drops that "▁" only when the next token is one of the
  tokenizer's *named or additional* special tokens (``<|system|>`` is neither unless the
  config lists it, so "▁" then stays as its own token). ``legacy: true`` behaves like
  InternLM2Tokenizer.
* Added tokens keep their ``rstrip``/``lstrip`` flags: Phi-3's chat tokens have
  ``rstrip: true``, which swallows the newline after ``<|user|>``.

``SentencePieceTokenizer`` reproduces those rules on transformers' sentencepiece backend, reading
every switch from the checkpoint's ``tokenizer_config.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from transformers import AddedToken
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

from pocketvl.serving.checkpoint import CheckpointError, CheckpointInfo
from pocketvl.vision.templates import INTERNVL_SPECIAL_TOKENS, Template

SPIECE_UNDERLINE = "▁"
# tokenizer_class in tokenizer_config.json -> whether that class ignores the `legacy` switch
_SENTENCEPIECE_CLASSES = {"InternLM2Tokenizer": True, "LlamaTokenizer": False}


class SentencePieceTokenizer(SentencePieceBackend):
    """Slow sentencepiece tokenizer with the InternLM2Tokenizer / LlamaTokenizer (4.37) rules."""

    def __init__(self, vocab_file: str, **kwargs: Any) -> None:
        self.add_bos_token = bool(kwargs.pop("add_bos_token", True))
        self.add_eos_token = bool(kwargs.pop("add_eos_token", False))
        # Later LlamaTokenizers can switch the "▁" prefix off; 4.37 always added it.
        self.add_prefix_space = bool(kwargs.pop("add_prefix_space", True))
        named = [kwargs.get(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")]
        extra = kwargs.get("additional_special_tokens") or []
        # The set LlamaTokenizer 4.37 consulted (all_special_tokens) before dropping a leading "▁".
        self._prefix_specials = frozenset(str(t) for t in [*named, *extra] if t is not None)
        super().__init__(vocab_file=vocab_file, **kwargs)  # type: ignore[no-untyped-call]

    def tokenize(
        self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs: Any
    ) -> list[str]:
        if pair is not None:
            raise ValueError("InternVL prompts are single sequences")
        if self.legacy or not text:
            return list(super().tokenize(text, **kwargs))
        text = text.replace(SPIECE_UNDERLINE, " ")
        if self.add_prefix_space:
            text = SPIECE_UNDERLINE + text
        tokens = list(super().tokenize(text, **kwargs))
        if len(tokens) > 1 and tokens[0] == SPIECE_UNDERLINE and tokens[1] in self._prefix_specials:
            tokens = tokens[1:]
        return tokens

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        ids = token_ids_0 + (token_ids_1 or [])
        bos = [self.bos_token_id] if self.add_bos_token else []
        eos = [self.eos_token_id] if self.add_eos_token else []
        return bos + ids + eos

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Decode runs of sentencepiece pieces with sentencepiece (byte fallback included)."""
        out: list[str] = []
        run: list[str] = []
        for token in tokens:
            if token in self._added_tokens_encoder:
                out += [self.sp_model.decode(run), token]
                run = []
            else:
                run.append(token)
        out.append(self.sp_model.decode(run))
        return "".join(out)


def _token_text(value: Any) -> str | None:
    """Special tokens appear as plain strings or as serialized AddedToken dicts."""
    if isinstance(value, dict):
        return str(value["content"])
    return None if value is None else str(value)


def _added_tokens(config: dict[str, Any]) -> dict[int, AddedToken]:
    out: dict[int, AddedToken] = {}
    for index, spec in config.get("added_tokens_decoder", {}).items():
        flags = {k: bool(spec.get(k, False)) for k in ("lstrip", "rstrip", "single_word")}
        out[int(index)] = AddedToken(
            spec["content"],
            normalized=bool(spec.get("normalized", False)),
            special=bool(spec.get("special", False)),
            **flags,
        )
    return out


def load_sentencepiece_tokenizer(path: Path) -> SentencePieceTokenizer:
    """Build the slow tokenizer from ``tokenizer.model`` + ``tokenizer_config.json``."""
    config_file, model_file = path / "tokenizer_config.json", path / "tokenizer.model"
    if not (config_file.is_file() and model_file.is_file()):
        raise CheckpointError(f"{path} lacks tokenizer.model or tokenizer_config.json")
    config = json.loads(config_file.read_text())
    cls = str(config.get("tokenizer_class", "")).removesuffix("Fast")
    if cls not in _SENTENCEPIECE_CLASSES:
        raise CheckpointError(
            f"tokenizer_class {cls!r} is not one whose rules we reproduce; "
            f"known: {sorted(_SENTENCEPIECE_CLASSES)}"
        )
    # InternLM2Tokenizer has no `legacy` switch: it always encodes chunks like legacy=True.
    legacy = True if _SENTENCEPIECE_CLASSES[cls] else bool(config.get("legacy", True))
    # Each class's own defaults when the config leaves a token out (InternLM2 pads with </s>).
    pad = "</s>" if cls == "InternLM2Tokenizer" else None
    defaults = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": pad}
    specials = {key: _token_text(config.get(key, value)) for key, value in defaults.items()}
    return SentencePieceTokenizer(
        vocab_file=str(model_file),
        legacy=legacy,
        add_bos_token=config.get("add_bos_token", True),
        add_eos_token=config.get("add_eos_token", False),
        add_prefix_space=config.get("add_prefix_space") is not False,  # null means default
        added_tokens_decoder=_added_tokens(config),
        additional_special_tokens=list(config.get("additional_special_tokens") or []),
        clean_up_tokenization_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
        model_max_length=int(config.get("model_max_length", 1 << 30)),
        **specials,
    )


def load_tokenizer(info: CheckpointInfo) -> Any:
    """The checkpoint's tokenizer, tokenising prompts as InternVL2's own code does; checked."""
    if info.llm_type == "qwen2":
        from transformers import Qwen2Tokenizer

        # Built into transformers: vocab.json + merges.txt + added tokens load without code.
        tokenizer: Any = Qwen2Tokenizer.from_pretrained(str(info.path), local_files_only=True)
    else:
        tokenizer = load_sentencepiece_tokenizer(info.path)
    check_tokenizer(tokenizer, info.template, int(info.raw_config["llm_config"]["vocab_size"]))
    return tokenizer


_CHAT_TOKEN = re.compile(r"<\|[a-z_]+\|>")


def template_special_tokens(template: Template) -> list[str]:
    """The chat-control tokens a template uses (``<|im_start|>``, ``<|end|>``, ...)."""
    text = template.system + template.user + template.assistant + template.separator
    return sorted(set(_CHAT_TOKEN.findall(text)))


def check_tokenizer(tokenizer: Any, template: Template, vocab_size: int) -> None:
    """Refuse tokenizers that cannot drive this model: split special tokens, ids out of range.

    Each InternVL and chat token must be an *added* token: only those are cut out of the prompt
    as one id before the subword model sees the text.
    """
    added = tokenizer.get_added_vocab()
    for token in (*INTERNVL_SPECIAL_TOKENS, *template_special_tokens(template)):
        if token not in added:
            raise CheckpointError(f"{token!r} is not a single added token in this tokenizer")
    top = max(tokenizer.get_vocab().values()) + 1
    if top > vocab_size:
        raise CheckpointError(
            f"the tokenizer produces ids up to {top - 1} but the LLM vocabulary has {vocab_size}"
        )
