"""The ``trtllm`` engine: a Triton Python (BLS) model in front of TensorRT engines.

Same tensors in and out as the PyTorch engine (``contracts/triton.py``), so the worker cannot
tell the two apart. Per batch of requests that Triton's dynamic batcher hands over:

1. our preprocessing, unchanged: decode each image, tile it (``vision.tiling``), render the
   checkpoint's template (``vision.templates``) and tokenise with the checkpoint's tokenizer;
2. one call per ``vision_max_batch`` tiles to the vision encoder plan (``<name>_vision``,
   Triton ``tensorrt`` backend): every tile of every request in the batch together;
3. one ``tensorrt_llm`` call per request (``<name>_llm``, in-flight batching, issued
   concurrently): each ``<IMG_CONTEXT>`` id becomes ``vocab_size + row`` of that request's
   prompt table, and carries an extra id derived from its image, so the KV cache blocks of
   a repeated image are reused while different images never share them;
4. detokenise and cut at the template separator exactly as the PyTorch engine does.

Everything here is a pure function or works through an ``Infer`` callable, which tests
replace with fakes; ``trtllm_model`` adapts it to Triton's Python backend.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from pocketvl.contracts.trtllm_stages import LLM_OUTPUTS, VISION_INPUT, VISION_OUTPUT
from pocketvl.serving.checkpoint import CheckpointInfo
from pocketvl.serving.engine import Generation, GenerationRequest
from pocketvl.vision.templates import IMG_CONTEXT, build_prompt
from pocketvl.vision.tiling import preprocess_image

Int32Array = npt.NDArray[np.int32]
Array = npt.NDArray[Any]
# (model name, input tensors with their batch dimension, wanted outputs) -> output tensors
Infer = Callable[[str, dict[str, Array], Sequence[str]], Awaitable[dict[str, Array]]]


@dataclass(frozen=True)
class Prepared:
    """One request after our preprocessing: what the engines need, nothing else."""

    pixels: npt.NDArray[np.float16]  # [tiles, 3, 448, 448]
    input_ids: Int32Array  # image-context positions already rewritten to prompt-table ids
    extra_ids: npt.NDArray[np.uint64]  # one per input id; 0 for text tokens
    max_new_tokens: int


@dataclass(frozen=True)
class TokenIds:
    image_context: int
    stop: int  # the template separator: generation ends there, as in model.chat
    pad: int
    vocab_size: int  # ids >= this address the prompt table


def image_extra_id(image: Image.Image, tiles: int) -> int:
    """A non-zero 64-bit id for an image at a tile count: same pixels and size, same id."""
    hasher = hashlib.blake2b(digest_size=8, person=f"tiles{tiles}".encode())
    hasher.update(f"{image.width}x{image.height}:".encode())
    hasher.update(image.tobytes())
    digest = hasher.digest()
    return int.from_bytes(digest, "little") or 1


def prompt_table_ids(
    input_ids: Sequence[int], ids: TokenIds, rows_per_image: Sequence[int], image_ids: Sequence[int]
) -> tuple[Int32Array, npt.NDArray[np.uint64]]:
    """Rewrite the k-th ``<IMG_CONTEXT>`` to ``vocab_size + k``; tag it with its image's id.

    ``rows_per_image[i]`` context tokens belong to image ``i``, in prompt order.
    """
    out = np.asarray(input_ids, dtype=np.int32).copy()
    positions = np.flatnonzero(out == ids.image_context)
    if len(positions) != sum(rows_per_image):
        raise ValueError(
            f"prompt has {len(positions)} image-context tokens, images need {sum(rows_per_image)}"
        )
    out[positions] = ids.vocab_size + np.arange(len(positions), dtype=np.int32)
    extra = np.zeros(len(out), dtype=np.uint64)
    extra[positions] = np.repeat(np.asarray(image_ids, dtype=np.uint64), rows_per_image)
    return out, extra


def stop_words_list(words: Sequence[Sequence[int]]) -> Int32Array:
    """TensorRT-LLM's ``[2, n]`` layout: all token ids, then each word's end offset (-1 pad)."""
    flat = [t for word in words for t in word]
    offsets = np.cumsum([len(word) for word in words]).tolist()
    width = max(len(flat), 1)
    table = np.full((2, width), -1, dtype=np.int32)
    table[0, : len(flat)] = flat
    table[1, : len(offsets)] = offsets
    return table


def prepare(
    request: GenerationRequest,
    info: CheckpointInfo,
    ids: TokenIds,
    tokenize: Callable[[str], list[int]],
) -> Prepared:
    """Tile, template and tokenise one request as the PyTorch engine does."""
    if not request.images:
        raise ValueError("a request needs at least one image")
    tiles, image_ids, batches = [], [], []
    for image in request.images:
        pixels = preprocess_image(image, request.max_tiles, info.use_thumbnail)
        tiles.append(pixels.shape[0])
        image_ids.append(image_extra_id(image, pixels.shape[0]))
        batches.append(pixels)
    prompt = build_prompt(info.template, request.question, tiles, info.tokens_per_tile)
    rows = [t * info.tokens_per_tile for t in tiles]
    input_ids, extra = prompt_table_ids(tokenize(prompt), ids, rows, image_ids)
    pixels16 = np.concatenate(batches, axis=0).astype(np.float16)
    return Prepared(pixels16, input_ids, extra, request.max_new_tokens)


def llm_inputs(item: Prepared, table: Array, ids: TokenIds) -> dict[str, Array]:
    """The tensorrt_llm request for one prepared request: greedy, our stop word, batch dim 1."""

    def scalar(value: int) -> Int32Array:
        return np.array([[value]], dtype=np.int32)

    return {
        "input_ids": item.input_ids[np.newaxis, :],
        "input_lengths": scalar(len(item.input_ids)),
        "request_output_len": scalar(item.max_new_tokens),
        "end_id": scalar(ids.stop),
        "pad_id": scalar(ids.pad),
        "stop_words_list": stop_words_list([[ids.stop]])[np.newaxis],
        "beam_width": scalar(1),
        "runtime_top_k": scalar(1),
        "prompt_embedding_table": table[np.newaxis],
        "prompt_vocab_size": scalar(table.shape[0]),
        "prompt_table_extra_ids": item.extra_ids[np.newaxis, :],
        "exclude_input_in_output": np.array([[True]]),
    }


def finish(
    outputs: dict[str, Array],
    prompt_tokens: int,
    stop: int,
    decode: Callable[[list[int]], str],
) -> Generation:
    """Generated ids -> the answer, cut at the separator and counted like the PyTorch engine."""
    length = int(np.asarray(outputs["sequence_length"]).reshape(-1)[0])
    new_ids = np.asarray(outputs["output_ids"]).reshape(-1)[:length].tolist()
    answer = new_ids
    if stop in new_ids:
        answer = new_ids[: new_ids.index(stop)]
        new_ids = new_ids[: len(answer) + 1]
    return Generation(decode(answer).strip(), prompt_tokens, len(new_ids))


async def encode_tiles(infer: Infer, vision_model: str, pixels: Array, max_batch: int) -> Array:
    """Vision features ``[tiles, tokens, hidden]`` for all tiles, ``max_batch`` per call."""
    chunks = [pixels[i : i + max_batch] for i in range(0, len(pixels), max_batch)]
    results = await asyncio.gather(
        *(infer(vision_model, {VISION_INPUT: chunk}, [VISION_OUTPUT]) for chunk in chunks)
    )
    return np.concatenate([r[VISION_OUTPUT] for r in results], axis=0)


@dataclass(frozen=True)
class Stages:
    vision_model: str
    llm_model: str
    vision_max_batch: int


async def run_batch(
    prepared: Sequence[Prepared | Exception],
    stages: Stages,
    ids: TokenIds,
    infer: Infer,
    decode: Callable[[list[int]], str],
) -> list[Generation | Exception]:
    """Encode every tile of the batch, then generate each request; failures stay per request."""
    valid = [p for p in prepared if isinstance(p, Prepared)]
    if not valid:
        return list(prepared)  # type: ignore[arg-type]  # all exceptions
    pixels = np.concatenate([p.pixels for p in valid], axis=0)
    try:
        features = await encode_tiles(infer, stages.vision_model, pixels, stages.vision_max_batch)
    except Exception as exc:  # the vision stage failed: every request that reached it fails
        return [exc if isinstance(p, Prepared) else p for p in prepared]
    bounds = np.cumsum([0] + [len(p.pixels) for p in valid])

    async def one(index: int, item: Prepared) -> Generation | Exception:
        rows = features[bounds[index] : bounds[index + 1]]
        table = rows.reshape(-1, rows.shape[-1])  # [tiles * tokens, hidden]
        try:
            out = await infer(stages.llm_model, llm_inputs(item, table, ids), list(LLM_OUTPUTS))
        except Exception as exc:
            return exc
        return finish(out, len(item.input_ids), ids.stop, decode)

    generated = iter(await asyncio.gather(*(one(i, p) for i, p in enumerate(valid))))
    return [next(generated) if isinstance(p, Prepared) else p for p in prepared]


def token_ids(tokenizer: Any, info: CheckpointInfo) -> TokenIds:
    vocab = tokenizer.get_vocab()
    stop = int(vocab[info.template.separator])
    pad = tokenizer.pad_token_id
    return TokenIds(
        image_context=int(vocab[IMG_CONTEXT]),
        stop=stop,
        pad=stop if pad is None else int(pad),
        vocab_size=int(info.raw_config["llm_config"]["vocab_size"]),
    )
