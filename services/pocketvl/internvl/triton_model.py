"""The Triton Python-backend model class, shared by every model in ``model_repository/``.

Parameters (config.pbtxt): ``checkpoint`` (a directory; relative names resolve under
``$POCKETVL_CHECKPOINT_DIR``), ``dtype`` (float32 | bfloat16 | float16), ``torch_threads``.
Each request gets its own response; a bad image fails only that request.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from pocketvl import triton_contract as tc

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

        from pocketvl.internvl.engine import InternVLEngine

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        dtype = params.get("dtype", "float32")
        if dtype not in _DTYPES:
            raise ValueError(f"parameter dtype={dtype!r}; use one of {_DTYPES}")
        threads = int(params.get("torch_threads", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        device = "cuda" if args.get("model_instance_kind") == "GPU" else "cpu"
        self.engine = InternVLEngine(
            resolve_checkpoint(params["checkpoint"]), getattr(torch, dtype), device
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                responses.append(self._answer(pb_utils, request))
            except Exception as exc:  # one bad request must not fail its neighbours
                error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def _answer(self, pb_utils: Any, request: Any) -> Any:
        def scalar(spec: tc.TensorSpec) -> Any:
            tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
            return None if tensor is None else tensor.as_numpy().reshape(-1)[0]

        images = pb_utils.get_input_tensor_by_name(request, tc.IMAGES.name).as_numpy().reshape(-1)
        question = scalar(tc.QUESTION)
        max_tiles = scalar(tc.MAX_TILES)
        result = self.engine.generate(
            images=[bytes(i) for i in images],
            question=question.decode("utf-8"),
            max_new_tokens=int(scalar(tc.MAX_NEW_TOKENS)),
            max_tiles=int(max_tiles)
            if max_tiles is not None
            else self.engine.info.max_dynamic_patch,
        )
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(tc.TEXT.name, np.array([result.text.encode()], dtype=np.object_)),
                pb_utils.Tensor(tc.PROMPT_TOKENS.name, np.array([result.prompt_tokens], np.int32)),
                pb_utils.Tensor(
                    tc.GENERATED_TOKENS.name, np.array([result.generated_tokens], np.int32)
                ),
            ]
        )
