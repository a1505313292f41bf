"""The Triton Python-backend (BLS) model of the ``trtllm`` engine: Triton <-> ``trtllm_bls``.

Parameters (config.pbtxt, written by ``modeltools/trtllm_repository.py``): ``checkpoint``
(config.json and tokenizer; relative names resolve under ``$POCKETVL_CHECKPOINT_DIR``),
``vision_model``, ``llm_model``, ``vision_max_batch`` (tiles per vision call, at most the
plan's max_batch_size). Requests Triton batches together share one vision pass; each gets
its own response, and a bad request fails only itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pocketvl.serving.triton_model import generation_request, triton_response
from pocketvl.serving.trtllm_bls import (
    Array,
    Infer,
    Prepared,
    Stages,
    prepare,
    run_batch,
    token_ids,
)


def triton_infer(pb_utils: Any) -> Infer:
    """An ``Infer`` over Triton BLS (``InferenceRequest.async_exec``)."""

    async def infer(
        model: str, inputs: dict[str, Array], outputs: Sequence[str]
    ) -> dict[str, Array]:
        request = pb_utils.InferenceRequest(
            model_name=model,
            inputs=[pb_utils.Tensor(name, value) for name, value in inputs.items()],
            requested_output_names=list(outputs),
        )
        response = await request.async_exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return {
            name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs
        }

    return infer


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        from pocketvl.serving.checkpoint import read_checkpoint_info
        from pocketvl.serving.tokenization import load_tokenizer
        from pocketvl.serving.triton_model import resolve_checkpoint

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.info = read_checkpoint_info(resolve_checkpoint(params["checkpoint"]))
        self.tokenizer: Any = load_tokenizer(self.info)
        self.ids = token_ids(self.tokenizer, self.info)
        self.stages = Stages(
            params["vision_model"], params["llm_model"], int(params["vision_max_batch"])
        )

    def _tokenize(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt)["input_ids"])

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    async def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        prepared: list[Prepared | Exception] = []
        for request in requests:
            try:
                parsed = generation_request(pb_utils, request, self.info.max_dynamic_patch)
                prepared.append(prepare(parsed, self.info, self.ids, self._tokenize))
            except Exception as exc:  # malformed tensors or images fail this request only
                prepared.append(exc)
        results = await run_batch(
            prepared, self.stages, self.ids, triton_infer(pb_utils), self._decode
        )
        return [triton_response(pb_utils, r) for r in results]
