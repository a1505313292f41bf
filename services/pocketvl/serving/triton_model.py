"""The Triton Python-backend model class, shared by every model in ``model_repository/``.

Parameters (config.pbtxt): ``checkpoint`` (a directory; relative names resolve under
``$POCKETVL_CHECKPOINT_DIR``), ``dtype`` (float32 | bfloat16 | float16), ``torch_threads``,
``dummy_weights`` (empty, or a size: full-size architecture with random weights).
Requests that Triton's dynamic batcher delivers together are generated as one batch;
each gets its own response, and a bad request fails only itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from pocketvl.contracts import triton as tc

_DTYPES = ("float32", "bfloat16", "float16")


def resolve_checkpoint(value: str) -> Path:
    path = Path(value)
    if not path.is_absolute():
        root = os.environ.get("POCKETVL_CHECKPOINT_DIR", ".pocketvl/checkpoints")
        path = Path(root) / path
    return path


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        import torch

        from pocketvl.serving.engine import InternVLEngine

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        dtype = params.get("dtype", "float32")
        if dtype not in _DTYPES:
            raise ValueError(f"parameter dtype={dtype!r}; use one of {_DTYPES}")
        threads = int(params.get("torch_threads", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        device = "cuda" if args.get("model_instance_kind") == "GPU" else "cpu"
        if device == "cuda":
            device = f"cuda:{args.get('model_instance_device_id', '0')}"
        self.engine = InternVLEngine(
            resolve_checkpoint(params["checkpoint"]),
            getattr(torch, dtype),
            device,
            dummy_size=params.get("dummy_weights") or None,
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        from pocketvl.serving.engine import GenerationRequest

        parsed: list[GenerationRequest | Exception] = []
        for request in requests:
            try:
                parsed.append(self._parse(pb_utils, request))
            except Exception as exc:  # malformed tensors fail this request only
                parsed.append(exc)
        valid = [p for p in parsed if isinstance(p, GenerationRequest)]
        results = iter(self.engine.generate_batch(valid) if valid else [])
        return [
            triton_response(pb_utils, next(results) if isinstance(p, GenerationRequest) else p)
            for p in parsed
        ]

    def _parse(self, pb_utils: Any, request: Any) -> Any:
        return generation_request(pb_utils, request, self.engine.info.max_dynamic_patch)


def generation_request(pb_utils: Any, request: Any, default_tiles: int) -> Any:
    """One Triton request's tensors -> a ``GenerationRequest`` (``default_tiles`` when the
    client sent no ``MAX_TILES``); shared by the PyTorch and the TensorRT-LLM models."""
    from pocketvl.serving.engine import GenerationRequest
    from pocketvl.serving.triton_inputs import model_inputs

    def tensor(spec: tc.TensorSpec) -> Any:
        found = pb_utils.get_input_tensor_by_name(request, spec.name)
        return None if found is None else found.as_numpy()

    inputs = model_inputs(tensor)
    tiles = inputs.max_tiles if inputs.max_tiles is not None else default_tiles
    return GenerationRequest(inputs.images, inputs.question, inputs.max_new_tokens, tiles)


def triton_response(pb_utils: Any, result: Any) -> Any:
    """A ``Generation`` -> its Triton response, or an exception -> an error response that
    fails this request only; shared by the PyTorch and the TensorRT-LLM models."""
    if isinstance(result, Exception):
        error = pb_utils.TritonError(f"{type(result).__name__}: {result}")
        return pb_utils.InferenceResponse(error=error)
    # Outputs carry the batch dimension: one row per request.
    return pb_utils.InferenceResponse(
        output_tensors=[
            pb_utils.Tensor(tc.TEXT.name, np.array([[result.text.encode()]], dtype=np.object_)),
            pb_utils.Tensor(tc.PROMPT_TOKENS.name, np.array([[result.prompt_tokens]], np.int32)),
            pb_utils.Tensor(
                tc.GENERATED_TOKENS.name, np.array([[result.generated_tokens]], np.int32)
            ),
        ]
    )
