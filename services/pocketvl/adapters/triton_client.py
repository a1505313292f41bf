"""Triton gRPC adapter: the only module that imports tritonclient.

Translates tritonclient's errors into ours: UNAVAILABLE / RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED
(server down, queue full, too slow) become ``InferenceUnavailable`` (retryable); anything
else is an ``InferenceError`` for this request only. Every inference carries the current
trace context as ``traceparent`` gRPC metadata. With ``shared_memory`` the pixels go through
a system shared-memory region (``shared_pixels``) and the message carries its name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from tritonclient.utils import InferenceServerException

from pocketvl.adapters.shared_pixels import Region, SharedPixels
from pocketvl.contracts import triton as tc
from pocketvl.errors import InferenceError, InferenceUnavailable
from pocketvl.settings import TritonSettings
from pocketvl.worker.ports import GenerationResult

_PROPAGATOR = TraceContextTextMapPropagator()
_RETRYABLE = {
    "StatusCode.UNAVAILABLE",
    "StatusCode.RESOURCE_EXHAUSTED",
    "StatusCode.DEADLINE_EXCEEDED",
}


def _translate(exc: InferenceServerException, model: str) -> InferenceError:
    status = str(exc.status())
    message = f"{model}: {status}: {exc.message()}"
    if status in _RETRYABLE:
        return InferenceUnavailable("model_unavailable", message)
    if status == "StatusCode.NOT_FOUND" or "unknown model" in (exc.message() or ""):
        return InferenceUnavailable("model_not_loaded", message)
    return InferenceError("inference_failed", message)


# Every pocketvl model batches (max_batch_size > 0): inputs carry a leading batch dim of 1.
def _bytes_input(spec: tc.TensorSpec, values: list[bytes]) -> Any:
    tensor = grpcclient.InferInput(spec.name, [1, len(values)], spec.client_dtype)
    tensor.set_data_from_numpy(np.array([values], dtype=np.object_))
    return tensor


def _array_input(spec: tc.TensorSpec, values: np.ndarray[Any, Any]) -> Any:
    tensor = grpcclient.InferInput(spec.name, [1, *values.shape], spec.client_dtype)
    tensor.set_data_from_numpy(values[np.newaxis])
    return tensor


def _region_input(spec: tc.TensorSpec, values: np.ndarray[Any, Any], region: Region) -> Any:
    tensor = grpcclient.InferInput(spec.name, [1, *values.shape], spec.client_dtype)
    tensor.set_shared_memory(region.name, values.nbytes)
    return tensor


def _lost_region(exc: InferenceServerException) -> bool:
    """Triton no longer knows a region we registered: it restarted."""
    message = exc.message() or ""
    return "shared memory region" in message and "unable to find" in message.lower()


def _int_input(spec: tc.TensorSpec, value: int) -> Any:
    tensor = grpcclient.InferInput(spec.name, [1, 1], spec.client_dtype)
    tensor.set_data_from_numpy(np.array([[value]], dtype=np.int32))
    return tensor


def tls_kwargs(settings: TritonSettings) -> dict[str, Any]:
    """tritonclient.grpc arguments for gRPC over TLS (file paths: the client reads them)."""
    if not settings.ssl:
        return {}
    kwargs: dict[str, Any] = {"ssl": True}
    for argument, path in (
        ("root_certificates", settings.ssl_root_cert),
        ("private_key", settings.ssl_keyfile),
        ("certificate_chain", settings.ssl_certfile),
    ):
        if path is not None:
            kwargs[argument] = str(path)
    return kwargs


class TritonInference:
    """``version_ttl_s``: how long a model's version is taken as known. Triton can load a
    new version at any time (explicit load, repository polling); the version an answer
    reports replaces the remembered one at once, and the TTL bounds how long cache hits
    (which ask Triton nothing) can go on naming the old one."""

    def __init__(
        self,
        settings: TritonSettings,
        version_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        size = settings.max_grpc_message_bytes
        self.client = grpcclient.InferenceServerClient(
            settings.url,
            **tls_kwargs(settings),
            channel_args=[
                ("grpc.max_send_message_length", size),
                ("grpc.max_receive_message_length", size),
                # gRPC backs off reconnecting up to 120 s by default: after an outage the
                # channel would stay idle long after Triton is back. Try as often as we retry.
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", max(100, int(settings.backoff_max_s * 1000))),
            ],
        )
        self.url = settings.url
        self.timeout_s = settings.timeout_s
        self.version_ttl_s = version_ttl_s
        self.clock = clock
        self._versions: dict[str, tuple[str, float]] = {}  # model -> (version, when learnt)
        self.shared: SharedPixels | None = None
        if settings.shared_memory:
            self.shared = SharedPixels(self._register_region, self._unregister_region)

    def _register_region(self, name: str, key: str, size: int) -> None:
        try:
            self.client.register_system_shared_memory(
                name, key, size, client_timeout=self.timeout_s
            )
        except InferenceServerException as exc:
            if str(exc.status()) in _RETRYABLE:  # Triton down: the usual outage message
                raise _translate(exc, f"register {key}") from exc
            # Held back and retried, never dead-lettered: a Triton that cannot open our
            # /dev/shm is a deployment to fix, not a bad request.
            raise InferenceUnavailable(
                "model_unavailable",
                f"triton.shared_memory: Triton could not map region {key} ({exc.message()});"
                " it needs this host's /dev/shm (same host or shared IPC), else turn it off",
            ) from exc

    def _unregister_region(self, name: str) -> None:
        self.client.unregister_system_shared_memory(name, client_timeout=2.0)

    def model_version(self, model: str) -> str:
        """The newest ready version of ``model``: remembered for ``version_ttl_s``, and
        replaced by the version each answer reports."""
        known = self._versions.get(model)
        if known is not None and self.clock() - known[1] < self.version_ttl_s:
            return known[0]
        try:
            meta = self.client.get_model_metadata(model, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise _translate(exc, model) from exc
        version = max(meta.versions, key=int) if meta.versions else "1"
        self._versions[model] = (version, self.clock())
        return version

    def reachable(self) -> bool:
        """Whether Triton answers at all (live), whatever its models' state."""
        try:
            return bool(self.client.is_server_live(client_timeout=2.0))
        except InferenceServerException:
            return False

    def ready(self, model: str) -> bool:
        try:
            return bool(self.client.is_model_ready(model, client_timeout=2.0))
        except InferenceServerException:
            return False

    def capacity(self, model: str) -> int | None:
        try:
            reply = self.client.get_model_config(model, as_json=True, client_timeout=2.0)
        except InferenceServerException:
            return None
        config = reply.get("config", {})
        batch = int(config.get("max_batch_size", 0)) or 1
        instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
        return batch * instances

    def parameters(self, model: str) -> dict[str, str] | None:
        """The string parameters of ``model``'s config (checkpoint, dummy_weights, ...), or
        None when Triton cannot say (down, model unknown)."""
        try:
            reply = self.client.get_model_config(model, as_json=True, client_timeout=5.0)
        except InferenceServerException:
            return None
        params = reply.get("config", {}).get("parameters", {})
        return {str(k): str(v.get("string_value", "")) for k, v in params.items()}

    def generate(
        self,
        model: str,
        images: list[tc.RgbImage],
        question: str,
        max_new_tokens: int,
        max_tiles: int,
    ) -> GenerationResult:
        pixels, shapes = tc.pack_images(images)
        rest = [
            _array_input(tc.IMAGE_SHAPES, shapes),
            _bytes_input(tc.QUESTION, [question.encode()]),
            _int_input(tc.MAX_NEW_TOKENS, max_new_tokens),
            _int_input(tc.MAX_TILES, max_tiles),
        ]
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)  # the current span (triton infer): Triton's trace joins it
        if self.shared is None:
            result = self._infer(model, [_array_input(tc.PIXELS, pixels), *rest], carrier)
        else:
            with self.shared.holding(pixels) as region:
                inputs = [_region_input(tc.PIXELS, pixels, region), *rest]
                try:
                    result = self._infer(model, inputs, carrier, region)
                except _RegionLost:
                    self.shared.register_again(region)
                    result = self._infer(model, inputs, carrier)
        version = str(result.get_response().model_version)
        if version:
            self._versions[model] = (version, self.clock())
        return GenerationResult(
            text=result.as_numpy(tc.TEXT.name).reshape(-1)[0].decode("utf-8", "replace"),
            prompt_tokens=int(result.as_numpy(tc.PROMPT_TOKENS.name).reshape(-1)[0]),
            generated_tokens=int(result.as_numpy(tc.GENERATED_TOKENS.name).reshape(-1)[0]),
            model_version=version,
        )

    def _infer(
        self, model: str, inputs: list[Any], carrier: dict[str, str], region: Region | None = None
    ) -> Any:
        try:
            return self.client.infer(
                model, inputs, client_timeout=self.timeout_s, headers=carrier or None
            )
        except InferenceServerException as exc:
            if region is not None and _lost_region(exc):
                raise _RegionLost from exc
            raise _translate(exc, model) from exc

    def inference_count(self, model: str) -> int:
        """Successful inferences Triton has run for ``model`` (its own statistics)."""
        return self.batch_counts(model)[0]

    def batch_counts(self, model: str) -> tuple[int, int]:
        """(requests inferred, model executions) so far: their ratio between two readings
        is the average batch Triton's batcher formed."""
        stats = self.client.get_inference_statistics(model)
        return (
            sum(int(s.inference_count) for s in stats.model_stats),
            sum(int(s.execution_count) for s in stats.model_stats),
        )

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()
        self.client.close()


class _RegionLost(Exception):
    """Triton answered that it does not know the request's region."""
