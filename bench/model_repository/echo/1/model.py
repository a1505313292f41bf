"""Benchmark stand-in (Triton Python backend): the pocketvl tensor interface, no model.

Each ``execute`` call is one batch from the dynamic batcher: it sleeps ``delay_ms`` once
(0 for ``echo``, 100 for ``fixed_latency``), then answers every request with its question.
Only numpy and Triton's own utilities: it loads in a second.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        parameters = json.loads(args["model_config"]).get("parameters", {})
        self.delay_s = float(parameters.get("delay_ms", {}).get("string_value", "0")) / 1000

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        if self.delay_s:
            time.sleep(self.delay_s)
        responses = []
        for request in requests:
            question = pb_utils.get_input_tensor_by_name(request, "QUESTION").as_numpy()
            text = bytes(question.reshape(-1)[0])
            outputs = [
                pb_utils.Tensor("TEXT", np.array([[text]], dtype=np.object_)),
                pb_utils.Tensor("PROMPT_TOKENS", np.array([[len(text.split())]], np.int32)),
                pb_utils.Tensor("GENERATED_TOKENS", np.array([[1]], np.int32)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
