"""Benchmark stand-in (Triton Python backend): the model's CPU preprocessing and nothing else.

Each request's tensors are read with ``pocketvl.serving.triton_inputs`` and every image is
tiled and normalised on the host (``preprocess_image``, one thread: the instances are the
parallelism); the answer is the tile count. No torch, no weights: ``bench.datapath`` runs it
with one and with two instances to show the work spreads across them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pocketvl.contracts import triton as tc
from pocketvl.serving.triton_inputs import model_inputs
from pocketvl.vision.tiling import preprocess_image


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        parameters = json.loads(args["model_config"]).get("parameters", {})
        self.threads = int(parameters.get("threads", {}).get("string_value", "1"))

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:

            def tensor(spec: tc.TensorSpec, request: Any = request) -> Any:
                found = pb_utils.get_input_tensor_by_name(request, spec.name)
                return None if found is None else found.as_numpy()

            inputs = model_inputs(tensor)
            tiles = sum(
                len(preprocess_image(image, inputs.max_tiles or 12, threads=self.threads))
                for image in inputs.images
            )
            text = f"{tiles} tiles".encode()
            outputs = [
                pb_utils.Tensor(tc.TEXT.name, np.array([[text]], dtype=np.object_)),
                pb_utils.Tensor(tc.PROMPT_TOKENS.name, np.array([[256 * tiles]], np.int32)),
                pb_utils.Tensor(tc.GENERATED_TOKENS.name, np.array([[1]], np.int32)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
