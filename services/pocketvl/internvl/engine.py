"""The PyTorch engine: encoded images + question in, generated text out.

Used by the Triton Python-backend models (``model_repository/*/1/model.py``) and by tests.
Decoding is greedy, as in the DA evaluations; generation stops at the template separator.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pocketvl.internvl.checkpoint import CheckpointError, load_native_model, read_checkpoint_info
from pocketvl.internvl.templates import IMG_CONTEXT, build_prompt
from pocketvl.internvl.tiling import normalize_tiles, tile_image


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    generated_tokens: int


class ImageDecodeError(ValueError):
    """The bytes are not an image this engine can read."""


def decode_rgb(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc


class InternVLEngine:
    def __init__(self, checkpoint: Path, dtype: torch.dtype = torch.float32, device: str = "cpu"):
        from transformers import AutoTokenizer

        self.info = read_checkpoint_info(checkpoint)
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
        image_token_id = _token_id(self.tokenizer, IMG_CONTEXT)
        self.stop_id = _token_id(self.tokenizer, self.info.template.separator)
        self.device = torch.device(device)
        self.model: Any = load_native_model(self.info, image_token_id, dtype).to(self.device)
        self.dtype = dtype

    @torch.inference_mode()
    def generate(
        self, images: list[bytes], question: str, max_new_tokens: int, max_tiles: int
    ) -> Generation:
        tiles_per_image: list[int] = []
        pixel_batches = []
        for data in images:
            tiles = tile_image(decode_rgb(data), max_tiles, self.info.use_thumbnail)
            tiles_per_image.append(len(tiles))
            pixel_batches.append(normalize_tiles(tiles))
        prompt = build_prompt(
            self.info.template, question, tiles_per_image, self.info.tokens_per_tile
        )
        enc = self.tokenizer(prompt, return_tensors="pt")
        pixels = torch.from_numpy(
            pixel_batches[0] if len(pixel_batches) == 1 else _concat(pixel_batches)
        )
        input_ids = enc["input_ids"].to(self.device)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=enc["attention_mask"].to(self.device),
            pixel_values=pixels.to(self.device, self.dtype),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=self.stop_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new_ids = out[0, input_ids.shape[1] :].tolist()
        if self.stop_id in new_ids:
            new_ids = new_ids[: new_ids.index(self.stop_id) + 1]
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        return Generation(
            text=text.strip(), prompt_tokens=input_ids.shape[1], generated_tokens=len(new_ids)
        )


def _token_id(tokenizer: Any, token: str) -> int:
    """The id of a token that must exist as one piece in the vocabulary."""
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise CheckpointError(f"the tokenizer has no {token!r} token: not an InternVL2 tokenizer")
    return int(vocab[token])


def _concat(batches: list[Any]) -> Any:
    import numpy as np

    return np.concatenate(batches, axis=0)
