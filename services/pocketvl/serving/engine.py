"""The PyTorch engine: decoded RGB images + question in, generated text out.

Used by the Triton Python-backend models (``model_repository/*/1/model.py``) and by tests.
Decoding is greedy, as in the DA evaluations; generation stops at the template separator.
Requests that arrive together are generated as one left-padded batch: every tile of every
request goes through the vision encoder in one call, each row stops at its own separator or
its own token budget (the batch ends when every row has), and a request that cannot be
prepared fails alone. Tiles travel to the device as uint8 and are normalised there, so a
GPU does that arithmetic and the host copies a quarter of the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import StoppingCriteria, StoppingCriteriaList

from pocketvl.serving.checkpoint import CheckpointError, load_native_model, read_checkpoint_info
from pocketvl.serving.full_size import build_dummy_model
from pocketvl.serving.tokenization import load_tokenizer
from pocketvl.vision.templates import IMG_CONTEXT, build_prompt
from pocketvl.vision.tiling import IMAGENET_MEAN, IMAGENET_STD, tiles_uint8


@dataclass(frozen=True)
class GenerationRequest:
    images: list[Image.Image]  # RGB, in prompt order
    question: str
    max_new_tokens: int
    max_tiles: int


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    generated_tokens: int


@dataclass(frozen=True)
class _Prepared:
    prompt: str
    tiles: np.ndarray[Any, np.dtype[np.uint8]]  # (N, 448, 448, 3)
    max_new_tokens: int
    prompt_tokens: int


def normalize_tiles(tiles: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (N, H, W, 3) tiles -> the model's (N, 3, H, W) input, on the tiles' device.

    ToTensor's ``/ 255`` then Normalize's ``(x - mean) / std`` in float32, in that order, as
    ``vision.tiling.preprocess_image`` does on the host (a test checks the bits), then the
    model's dtype.
    """
    mean = torch.as_tensor(IMAGENET_MEAN, device=tiles.device).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, device=tiles.device).view(1, 3, 1, 1)
    pixels = tiles.permute(0, 3, 1, 2).to(torch.float32)
    return pixels.div_(255).sub_(mean).div_(std).to(dtype)


class _RowBudgets(StoppingCriteria):
    """Each row of the batch is done once it has its own number of new tokens."""

    def __init__(self, prompt_width: int, budgets: list[int], device: torch.device) -> None:
        self.prompt_width = prompt_width
        self.budgets = torch.tensor(budgets, device=device)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return (input_ids.shape[1] - self.prompt_width) >= self.budgets


def _token_id(tokenizer: Any, token: str) -> int:
    """The id of a token that must exist as one piece in the vocabulary."""
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise CheckpointError(f"the tokenizer has no {token!r} token: not an InternVL2 tokenizer")
    return int(vocab[token])


def rope_switch_length(llm: dict[str, Any]) -> int | None:
    """The sequence length at which the LLM's rotary frequencies change, if they do."""
    scaling = llm.get("rope_scaling") or {}
    kind = scaling.get("type", scaling.get("rope_type"))
    if kind in ("su", "longrope"):
        return int(llm["original_max_position_embeddings"])
    if kind == "dynamic":
        return int(llm["max_position_embeddings"])
    return None


class InternVLEngine:
    def __init__(
        self,
        checkpoint: Path,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
        dummy_size: str | None = None,
    ) -> None:
        """``dummy_size`` ("1b", "2b", "4b"): ignore the checkpoint's weights and build that
        size's full architecture with random weights (throughput runs without downloads);
        the tokenizer still comes from ``checkpoint``, which must have the same backbone."""
        self.info = read_checkpoint_info(checkpoint)
        self.tokenizer: Any = load_tokenizer(self.info)
        self.tokenizer.padding_side = "left"  # generation appends on the right
        image_token_id = _token_id(self.tokenizer, IMG_CONTEXT)
        self.stop_id = _token_id(self.tokenizer, self.info.template.separator)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.stop_id
            self.tokenizer.pad_token_id = self.stop_id
        self.device = torch.device(device)
        if dummy_size is None:
            model = load_native_model(self.info, image_token_id, dtype)
        else:
            model = build_dummy_model(self.info, dummy_size, image_token_id, dtype, self.device)
        self.model: Any = model.to(self.device)
        self.dtype = dtype
        self.rope_switch = rope_switch_length(self.info.raw_config["llm_config"])

    def generate(
        self, images: list[Image.Image], question: str, max_new_tokens: int, max_tiles: int
    ) -> Generation:
        result = self.generate_batch(
            [GenerationRequest(images, question, max_new_tokens, max_tiles)]
        )[0]
        if isinstance(result, Exception):
            raise result
        return result

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generation | Exception]:
        """One generation per request, in order; a failed request yields its exception."""
        results: dict[int, Generation | Exception] = {}
        prepared: dict[int, _Prepared] = {}
        for index, request in enumerate(requests):
            try:
                prepared[index] = self._prepare(request)
            except ValueError as exc:
                results[index] = exc
        groups: dict[object, list[int]] = {}
        for index, item in prepared.items():
            groups.setdefault(self._batch_key(index, item), []).append(index)
        for indices in groups.values():
            generated = self._generate_prepared([prepared[i] for i in indices])
            results.update(zip(indices, generated, strict=True))
        return [results[index] for index in range(len(requests))]

    def _batch_key(self, index: int, item: _Prepared) -> object:
        """Which requests may share a batch without changing anyone's output.

        Length-dependent RoPE (Phi-3 longrope, InternLM2 dynamic NTK) picks its frequencies
        from the longest sequence in the batch; a request joins others only when it stays on
        the same side of that switch for its whole generation, else it runs alone.
        """
        if self.rope_switch is None:
            return "any"
        if item.prompt_tokens + item.max_new_tokens <= self.rope_switch:
            return "below"
        if item.prompt_tokens > self.rope_switch:
            return "above"
        return ("alone", index)

    def _prepare(self, request: GenerationRequest) -> _Prepared:
        if not request.images:
            raise ValueError("a request needs at least one image")
        tiles_per_image, batches = [], []
        for image in request.images:
            tiles = tiles_uint8(image, request.max_tiles, self.info.use_thumbnail)
            tiles_per_image.append(tiles.shape[0])
            batches.append(tiles)
        prompt = build_prompt(
            self.info.template, request.question, tiles_per_image, self.info.tokens_per_tile
        )
        length = len(self.tokenizer(prompt)["input_ids"])
        return _Prepared(prompt, np.concatenate(batches, axis=0), request.max_new_tokens, length)

    @torch.inference_mode()
    def _generate_prepared(self, prepared: list[_Prepared]) -> list[Generation]:
        enc = self.tokenizer([p.prompt for p in prepared], return_tensors="pt", padding=True)
        # Every tile of the batch, in request order: one vision-encoder call for all of them.
        tiles = torch.from_numpy(np.concatenate([p.tiles for p in prepared], axis=0))
        input_ids = enc["input_ids"].to(self.device)
        budgets = [p.max_new_tokens for p in prepared]
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=enc["attention_mask"].to(self.device),
            pixel_values=normalize_tiles(tiles.to(self.device), self.dtype),
            max_new_tokens=max(budgets),
            stopping_criteria=StoppingCriteriaList(
                [_RowBudgets(input_ids.shape[1], budgets, self.device)]
            ),
            do_sample=False,
            eos_token_id=self.stop_id,
            pad_token_id=self.pad_id,
        )
        prompt_lengths = enc["attention_mask"].sum(dim=1).tolist()
        generations = []
        for row, item in enumerate(prepared):
            new_ids = out[row, input_ids.shape[1] :].tolist()[: item.max_new_tokens]
            # Like model.chat: the answer ends at the separator, which is counted but not shown
            # (Phi-3's <|end|> is not a "special" token, so skip_special_tokens keeps it).
            answer_ids = new_ids
            if self.stop_id in new_ids:
                answer_ids = new_ids[: new_ids.index(self.stop_id)]
                new_ids = new_ids[: len(answer_ids) + 1]
            text = self.tokenizer.decode(answer_ids, skip_special_tokens=True)
            generations.append(Generation(text.strip(), int(prompt_lengths[row]), len(new_ids)))
        return generations
