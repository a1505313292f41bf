"""The shipped example requests (``schemas/examples/DOMAIN.TASK.json``), for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "schemas" / "examples").glob("*.json"))


def example(domain: str) -> dict[str, Any]:
    """The first example request of ``domain`` (files sort by name: driving.bdd first)."""
    for path in EXAMPLES:
        if path.stem.startswith(domain):
            return dict(json.loads(path.read_text()))
    raise AssertionError(f"no example request for {domain}")
