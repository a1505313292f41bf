"""The trtllm engine's BLS logic, with fakes for the TensorRT stages.

The equivalence test runs the tiny checkpoint's own vision tower and LLM behind fakes that
take exactly the tensors the BLS sends to Triton's ``tensorrt`` and ``tensorrt_llm``
backends (prompt table addressed by ids >= vocab_size, greedy, end id), and checks that the
answers equal the PyTorch engine's.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from pocketvl.contracts import triton as tc
from pocketvl.contracts.trtllm_stages import LLM_INPUTS, NUMPY_TYPES, VISION_INPUT, VISION_OUTPUT
from pocketvl.serving.engine import Generation, GenerationRequest, InternVLEngine
from pocketvl.serving.trtllm_bls import (
    Prepared,
    Stages,
    TokenIds,
    finish,
    image_extra_id,
    prepare,
    prompt_table_ids,
    run_batch,
    stop_words_list,
    token_ids,
)
from pocketvl.serving.trtllm_model import TritonPythonModel
from pocketvl.vision.templates import IMG_CONTEXT
from tests.support import fake_pb_utils
from tests.support.samples import road_scene, satellite_tile

IDS = TokenIds(image_context=7, stop=2, pad=0, vocab_size=100)
STAGES = Stages("m_vision", "m_llm", vision_max_batch=4)


def test_stop_words_list_is_ids_then_end_offsets() -> None:
    table = stop_words_list([[5], [7, 8]])
    assert table.tolist() == [[5, 7, 8], [1, 3, -1]]
    assert table.dtype == np.int32


def test_image_context_ids_become_prompt_table_rows_tagged_by_image() -> None:
    ids, extra = prompt_table_ids([1, 7, 7, 3, 7, 7, 7, 4], IDS, [2, 3], [11, 22])
    assert ids.tolist() == [1, 100, 101, 3, 102, 103, 104, 4]
    assert extra.tolist() == [0, 11, 11, 0, 22, 22, 22, 0]
    assert (ids.dtype, extra.dtype) == (np.dtype(np.int32), np.dtype(np.uint64))
    with pytest.raises(ValueError, match="image-context tokens"):
        prompt_table_ids([1, 7, 3], IDS, [2], [11])


def test_extra_id_follows_the_picture_and_its_tiles_and_is_never_zero() -> None:
    a, b = rgb(road_scene(1)), rgb(road_scene(2))
    assert image_extra_id(a, 13) == image_extra_id(a, 13)
    assert image_extra_id(a, 13) != image_extra_id(b, 13)
    assert image_extra_id(a, 13) != image_extra_id(a, 7)
    assert all(image_extra_id(Image.new("RGB", (1, 1), (i, 0, 0)), 1) != 0 for i in range(256))


def test_finish_cuts_at_the_separator_and_counts_it() -> None:
    outputs = {"output_ids": np.array([[[5, 6, 2, 9, 9]]]), "sequence_length": np.array([[4]])}
    got = finish(outputs, 30, stop=2, decode=lambda ids: f" {ids} ")
    assert got == Generation("[5, 6]", 30, 3)
    unstopped = {"output_ids": np.array([[[5, 6, 9]]]), "sequence_length": np.array([[3]])}
    assert finish(unstopped, 30, stop=2, decode=str).generated_tokens == 3


def _prepared(tiles: int, text: int = 3, new: int = 8) -> Prepared:
    pixels = np.full((tiles, 3, 448, 448), tiles, dtype=np.float16)
    ids, extra = prompt_table_ids([1] * text + [7] * (tiles * 2), IDS, [tiles * 2], [tiles])
    return Prepared(pixels, ids, extra, new)


class Recorder:
    """Fake stages: vision returns [n, 2, 4] features, the LLM echoes a fixed answer."""

    def __init__(self, fail_llm_for: int | None = None, fail_vision: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, np.ndarray[Any, Any]]]] = []
        self.fail_llm_for, self.fail_vision = fail_llm_for, fail_vision

    async def __call__(
        self, model: str, inputs: dict[str, np.ndarray[Any, Any]], outputs: Any
    ) -> dict[str, np.ndarray[Any, Any]]:
        self.calls.append((model, inputs))
        if model == STAGES.vision_model:
            if self.fail_vision:
                raise RuntimeError("vision down")
            tiles = inputs[VISION_INPUT]
            value = tiles[:, 0, 0, 0].astype(np.float16)
            return {VISION_OUTPUT: np.broadcast_to(value[:, None, None], (len(tiles), 2, 4))}
        if int(inputs["input_lengths"][0, 0]) == self.fail_llm_for:
            raise RuntimeError("llm refused")
        return {"output_ids": np.array([[[40, 41, 2]]]), "sequence_length": np.array([[3]])}


def _run(prepared: list[Prepared | Exception], infer: Recorder) -> list[Generation | Exception]:
    return asyncio.run(run_batch(prepared, STAGES, IDS, infer, str))


def test_one_vision_pass_for_the_batch_then_one_llm_request_each() -> None:
    infer = Recorder()
    results = _run([_prepared(3), _prepared(2)], infer)
    assert results == [Generation("[40, 41]", 9, 3), Generation("[40, 41]", 7, 3)]
    vision = [inputs for model, inputs in infer.calls if model == STAGES.vision_model]
    assert [len(v[VISION_INPUT]) for v in vision] == [4, 1]  # 5 tiles, 4 per call at most
    llm = [inputs for model, inputs in infer.calls if model == STAGES.llm_model]
    first, second = sorted(llm, key=lambda i: -int(i["input_lengths"][0, 0]))
    # Each request's table is its own tiles' features, rows in tile order.
    assert first["prompt_embedding_table"].shape == (1, 6, 4)
    assert first["prompt_embedding_table"][0, :, 0].tolist() == [3.0] * 6
    assert second["prompt_embedding_table"][0, :, 0].tolist() == [2.0] * 4
    assert first["prompt_vocab_size"].tolist() == [[6]]
    assert first["input_ids"][0].tolist() == [1, 1, 1, 100, 101, 102, 103, 104, 105]
    assert first["end_id"].tolist() == [[IDS.stop]]
    assert first["runtime_top_k"].tolist() == [[1]] and first["beam_width"].tolist() == [[1]]
    assert first["stop_words_list"].tolist() == [[[IDS.stop], [1]]]


def test_every_llm_tensor_has_the_declared_name_type_and_rank() -> None:
    infer = Recorder()
    _run([_prepared(2)], infer)
    (sent,) = [inputs for model, inputs in infer.calls if model == STAGES.llm_model]
    assert set(sent) == set(LLM_INPUTS)
    for name, value in sent.items():
        data_type, dims, _ = LLM_INPUTS[name]
        assert value.dtype == np.dtype(NUMPY_TYPES[data_type]), name
        assert value.shape[0] == 1 and value.ndim == len(dims) + 1, name
        assert all(d in (-1, got) for d, got in zip(dims, value.shape[1:], strict=True)), name
    assert sent["input_ids"].shape == sent["prompt_table_extra_ids"].shape


def test_failures_stay_with_their_request() -> None:
    bad = ValueError("cannot decode image")
    results = _run([_prepared(1), bad, _prepared(2)], Recorder(fail_llm_for=7))
    assert results[0] == Generation("[40, 41]", 5, 3)
    assert results[1] is bad
    assert isinstance(results[2], RuntimeError) and "llm refused" in str(results[2])
    down = _run([_prepared(1), bad], Recorder(fail_vision=True))
    assert isinstance(down[0], RuntimeError) and down[1] is bad


class TinyStages:
    """The tiny checkpoint's own vision tower and LLM, behind the TensorRT stage interfaces."""

    def __init__(self, engine: InternVLEngine, vocab_size: int) -> None:
        self.model, self.vocab_size = engine.model, vocab_size

    def vision(self, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        pixels = torch.from_numpy(inputs[VISION_INPUT].astype(np.float32))
        with torch.inference_mode():
            features = self.model.get_image_features(pixel_values=pixels)
        features = getattr(features, "pooler_output", features)
        return {VISION_OUTPUT: features.numpy().astype(np.float16)}

    def llm(self, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        ids = torch.from_numpy(inputs["input_ids"][0].astype(np.int64))
        table = torch.from_numpy(inputs["prompt_embedding_table"][0].astype(np.float32))
        embed = self.model.get_input_embeddings()
        fake = ids >= self.vocab_size
        with torch.inference_mode():
            rows = embed(torch.where(fake, 0, ids))
            rows[fake] = table[ids[fake] - self.vocab_size]
            out: list[int] = []
            for _ in range(int(inputs["request_output_len"][0, 0])):
                logits = self.model(inputs_embeds=rows[None]).logits[0, -1]
                token = int(logits.argmax())
                out.append(token)
                if token == int(inputs["end_id"][0, 0]):
                    break
                rows = torch.cat([rows, embed(torch.tensor([token]))])
        return {
            "output_ids": np.array([[out]], np.int32),
            "sequence_length": np.array([[len(out)]]),
        }


@pytest.fixture(scope="module")
def tiny_engine(tiny_checkpoint: Path) -> InternVLEngine:
    return InternVLEngine(tiny_checkpoint)


def _triton_model(tiny_engine: InternVLEngine, monkeypatch: pytest.MonkeyPatch) -> Any:
    stages = TinyStages(tiny_engine, int(tiny_engine.info.raw_config["llm_config"]["vocab_size"]))
    handlers: dict[str, fake_pb_utils.Handler] = {"m_vision": stages.vision, "m_llm": stages.llm}
    monkeypatch.setitem(
        sys.modules, "triton_python_backend_utils", fake_pb_utils.make_module(handlers)
    )
    model = TritonPythonModel()
    params = {"checkpoint": str(tiny_engine.info.path), "vision_model": "m_vision"}
    params |= {"llm_model": "m_llm", "vision_max_batch": "8"}
    config = {"parameters": {k: {"string_value": v} for k, v in params.items()}}
    model.initialize({"model_config": json.dumps(config)})
    return model


def rgb(data: bytes) -> Image.Image:
    """A test picture decoded as the worker sends it: RGB pixels."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def _request(images: list[Image.Image], question: str, new: int, tiles: int) -> Any:
    pixels, shapes = tc.pack_images([np.asarray(image) for image in images])
    return _tensors(pixels, shapes, question, new, tiles)


def _tensors(pixels: Any, shapes: Any, question: str, new: int, tiles: int) -> Any:
    return fake_pb_utils.FakeRequest(
        {
            tc.PIXELS.name: pixels[None],
            tc.IMAGE_SHAPES.name: shapes[None],
            tc.QUESTION.name: np.array([[question.encode()]], dtype=np.object_),
            tc.MAX_NEW_TOKENS.name: np.array([[new]], dtype=np.int32),
            tc.MAX_TILES.name: np.array([[tiles]], dtype=np.int32),
        }
    )


def test_the_bls_model_answers_as_the_pytorch_engine(
    tiny_engine: InternVLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _triton_model(tiny_engine, monkeypatch)
    cases = [
        ([rgb(road_scene(3, (896, 448)))], "What is ahead?", 12, 6),
        ([rgb(satellite_tile(1)), rgb(satellite_tile(2))], "Compare the two.", 10, 1),
        ([rgb(satellite_tile(4, (448, 448)))], "Land use?", 1, 12),
    ]
    # pixels that do not fill the shapes they claim: that request fails alone
    malformed = _tensors(np.zeros(5, np.uint8), np.array([[1, 1]], np.int32), "?", 4, 1)
    requests = [_request(*case) for case in cases] + [malformed]
    responses = asyncio.run(model.execute(requests))
    for case, reply in zip(cases, responses, strict=False):
        want = tiny_engine.generate(*case)
        got = Generation(
            reply.output(tc.TEXT.name)[0, 0].decode(),
            int(reply.output(tc.PROMPT_TOKENS.name)[0, 0]),
            int(reply.output(tc.GENERATED_TOKENS.name)[0, 0]),
        )
        assert got == want
    assert responses[-1].has_error() and "IMAGE_SHAPES" in responses[-1].error.message()


def test_prepare_tokenises_as_the_pytorch_engine(tiny_engine: InternVLEngine) -> None:
    ids = token_ids(tiny_engine.tokenizer, tiny_engine.info)
    request = GenerationRequest(
        [rgb(road_scene(5, (1344, 448))), rgb(road_scene(5, (1344, 448)))], "Q?", 4, 3
    )
    prepared = prepare(
        request, tiny_engine.info, ids, lambda p: tiny_engine.tokenizer(p)["input_ids"]
    )
    tiles = len(prepared.pixels)
    assert tiles == 8  # 3x1 grid + thumbnail, per image
    context = int(tiny_engine.tokenizer.convert_tokens_to_ids(IMG_CONTEXT))
    restored = np.where(prepared.input_ids >= ids.vocab_size, context, prepared.input_ids)
    assert len(restored) == tiny_engine.generate(request.images, "Q?", 1, 3).prompt_tokens
    rows = prepared.extra_ids[prepared.extra_ids != 0]
    assert len(rows) == tiles * 256 and len(set(rows.tolist())) == 1  # same picture, same id
