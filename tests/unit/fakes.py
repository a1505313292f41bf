"""In-memory stand-ins for the unit tests of the pure path.

The same behaviours are exercised against the real Redis, broker and Triton in
tests/integration, so these stay honest.
"""

from __future__ import annotations

from pocketvl.errors import InferenceError
from pocketvl.worker.ports import GenerationResult


class DictCache:
    def __init__(self) -> None:
        self.data: dict[str, GenerationResult] = {}
        self.done: set[str] = set()

    def get(self, key: str) -> GenerationResult | None:
        return self.data.get(key)

    def put(self, key: str, value: GenerationResult) -> None:
        self.data[key] = value

    def answered(self, event_id: str) -> bool:
        return event_id in self.done

    def mark_answered(self, event_ids: list[str]) -> None:
        self.done.update(event_ids)


class ScriptedInference:
    """Answers ``text``; raises the queued errors first, one per call."""

    def __init__(self, text: str = "B", errors: list[InferenceError] | None = None):
        self.text = text
        self.errors = list(errors or [])
        self.calls: list[tuple[str, int, str, int, int]] = []
        self.images: list[list[bytes]] = []

    def model_version(self, model: str) -> str:
        return "1"

    def generate(
        self, model: str, images: list[bytes], question: str, max_new_tokens: int, max_tiles: int
    ) -> GenerationResult:
        self.calls.append((model, len(images), question, max_new_tokens, max_tiles))
        self.images.append(images)
        if self.errors:
            raise self.errors.pop(0)
        return GenerationResult(self.text, 300, 4, "1")
