"""A stand-in for Triton's ``triton_python_backend_utils`` with BLS, for tests on machines
without tritonserver: tensors are numpy arrays, and ``InferenceRequest.async_exec`` calls a
Python function registered per model name (a fake of the TensorRT stage)."""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Handler = Callable[[dict[str, np.ndarray[Any, Any]]], dict[str, np.ndarray[Any, Any]]]


@dataclass
class Tensor:
    name: str
    value: np.ndarray[Any, Any]

    def as_numpy(self) -> np.ndarray[Any, Any]:
        return self.value


@dataclass
class TritonError:
    text: str

    def message(self) -> str:
        return self.text


@dataclass
class InferenceResponse:
    output_tensors: list[Tensor] = field(default_factory=list)
    error: TritonError | None = None

    def has_error(self) -> bool:
        return self.error is not None

    def output(self, name: str) -> np.ndarray[Any, Any]:
        return next(t.value for t in self.output_tensors if t.name == name)


@dataclass
class FakeRequest:
    tensors: dict[str, np.ndarray[Any, Any]]


def make_module(handlers: dict[str, Handler]) -> types.ModuleType:
    """A ``triton_python_backend_utils`` whose BLS calls go to ``handlers[model_name]``."""
    module = types.ModuleType("triton_python_backend_utils")

    class InferenceRequest:
        def __init__(
            self, model_name: str, inputs: list[Tensor], requested_output_names: list[str]
        ) -> None:
            self.model_name = model_name
            self.inputs = {t.name: t.value for t in inputs}
            self.wanted = requested_output_names

        async def async_exec(self) -> InferenceResponse:
            try:
                out = handlers[self.model_name](self.inputs)
            except Exception as exc:
                return InferenceResponse(error=TritonError(str(exc)))
            return InferenceResponse([Tensor(n, out[n]) for n in self.wanted])

    def get_input_tensor_by_name(request: FakeRequest, name: str) -> Tensor | None:
        value = request.tensors.get(name)
        return None if value is None else Tensor(name, value)

    def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor:
        return Tensor(name, response.output(name))

    module.Tensor = Tensor  # type: ignore[attr-defined]
    module.TritonError = TritonError  # type: ignore[attr-defined]
    module.InferenceResponse = InferenceResponse  # type: ignore[attr-defined]
    module.InferenceRequest = InferenceRequest  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = get_input_tensor_by_name  # type: ignore[attr-defined]
    module.get_output_tensor_by_name = get_output_tensor_by_name  # type: ignore[attr-defined]
    return module
