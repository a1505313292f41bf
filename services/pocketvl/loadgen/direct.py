"""The same Triton model driven directly by tritonclient: what the worker is measured against.

The inputs are exactly what the worker sends for the request (decoded, composed, encoded),
prepared once; ``concurrency`` threads share one client, as the worker's threads do.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pocketvl.adapters.claim_check import image_stores
from pocketvl.adapters.triton_client import TritonInference
from pocketvl.domains.compose import Composed, prepare_inputs
from pocketvl.loadgen.progress import Progress
from pocketvl.settings import Settings
from pocketvl.worker.codec import decode_request
from pocketvl.worker.images import ImageFetcher


@dataclass
class DirectFigures:
    requests: int
    concurrency: int
    seconds: float
    throughput: float
    average_batch: float


def composed_inputs(settings: Settings, request: dict[str, Any]) -> Composed:
    decoded = decode_request(json.dumps(request).encode(), str(request["domain"]))
    fetcher = ImageFetcher(settings.limits, image_stores(settings.image_store))
    try:
        return prepare_inputs(decoded, fetcher.load_all(decoded.images), settings.limits)
    finally:
        fetcher.close()


def drive(
    triton: TritonInference,
    model: str,
    composed: Composed,
    requests: int,
    concurrency: int,
    max_new_tokens: int = 16,
    max_tiles: int = 12,
) -> DirectFigures:
    tickets = itertools.count()
    lock = threading.Lock()
    progress = Progress(f"direct {model}", requests)
    finished = [0]

    def loop() -> None:
        while True:
            with lock:
                ticket = next(tickets)
            if ticket >= requests:
                return
            triton.generate(model, composed.images, composed.question, max_new_tokens, max_tiles)
            with lock:
                finished[0] += 1
                progress.update(finished[0])

    before = triton.batch_counts(model)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(loop) for _ in range(concurrency)]:
            future.result()
    seconds = time.perf_counter() - started
    progress.close()
    after = triton.batch_counts(model)
    return DirectFigures(
        requests, concurrency, seconds, requests / seconds, average_batch(before, after)
    )


def average_batch(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Requests per model execution between two (inferences, executions) readings."""
    executions = after[1] - before[1]
    return (after[0] - before[0]) / executions if executions else float("nan")
