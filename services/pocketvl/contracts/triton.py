"""The tensor interface of every pocketvl Triton model, in one place.

``inference.py`` (client), the Python-backend models and ``config.pbtxt`` files all follow
this; a test parses every ``config.pbtxt`` and checks it against these tables.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # config.pbtxt spelling
    dims: tuple[int, ...]
    optional: bool = False

    @property
    def client_dtype(self) -> str:
        """tritonclient's spelling of the same type."""
        return {"TYPE_STRING": "BYTES", "TYPE_INT32": "INT32"}[self.data_type]


# Dims exclude the batch dimension: every model sets max_batch_size > 0 and the dynamic batcher
# groups requests, so clients send a leading dimension of 1.
IMAGES = TensorSpec("IMAGES", "TYPE_STRING", (-1,))  # encoded image files, in prompt order
QUESTION = TensorSpec("QUESTION", "TYPE_STRING", (1,))  # UTF-8 user text (without <image>)
MAX_NEW_TOKENS = TensorSpec("MAX_NEW_TOKENS", "TYPE_INT32", (1,))
MAX_TILES = TensorSpec("MAX_TILES", "TYPE_INT32", (1,), optional=True)

TEXT = TensorSpec("TEXT", "TYPE_STRING", (1,))
PROMPT_TOKENS = TensorSpec("PROMPT_TOKENS", "TYPE_INT32", (1,))
GENERATED_TOKENS = TensorSpec("GENERATED_TOKENS", "TYPE_INT32", (1,))

INPUTS = (IMAGES, QUESTION, MAX_NEW_TOKENS, MAX_TILES)
OUTPUTS = (TEXT, PROMPT_TOKENS, GENERATED_TOKENS)
