"""What a benchmark sends: a mix of example requests, a share of them repeats (cache hits).

Requests come from the shipped examples (``schemas/examples/DOMAIN.TASK.json``). A fresh
request changes what the cache key covers (the question, or a comment inside the image for
tasks without one), so it needs its own inference; a repeat copies an earlier request's content
under a new event id, so the worker answers it from the result cache.
"""

from __future__ import annotations

import copy
import json
import random
import struct
import zlib
from base64 import b64decode, b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketvl.errors import PocketvlError
from pocketvl.worker.envelope import OutboundRecord, request_record


@dataclass(frozen=True)
class LoadPlan:
    requests: int
    rate: float | None  # requests per second; None: as fast as the producer can
    mix: dict[str, float]  # example name ("remote_sensing.vqa") -> weight
    repeat_fraction: float = 0.0  # share of requests repeating an earlier one's content
    keys: int = 64  # distinct record keys (vehicles, scanners...), round robin
    seed: int = 0
    # Keys chosen so that each of this many partitions gets the same share of them (and of
    # the requests); None: keys "entity-0", "entity-1"... wherever they hash.
    even_partitions: int | None = None

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise PocketvlError("a benchmark sends at least one request")
        if self.rate is not None and self.rate <= 0:
            raise PocketvlError("--rate must be positive (or omitted: as fast as possible)")
        if not 0.0 <= self.repeat_fraction <= 1.0:
            raise PocketvlError("--repeats is a fraction between 0 and 1")
        if not self.mix or any(w <= 0 for w in self.mix.values()):
            raise PocketvlError("--mix needs at least one example with a positive weight")
        if self.even_partitions is not None and self.keys % self.even_partitions:
            raise PocketvlError("keys spread evenly over partitions: a multiple of them")


@dataclass(frozen=True)
class Planned:
    event_id: str
    domain: str
    repeat: bool
    record: OutboundRecord


def parse_mix(text: str, available: list[str]) -> dict[str, float]:
    """``remote_sensing.vqa=3,medical.vqa=1`` (weights optional) into weights by example."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in available:
            raise PocketvlError(f"no example {name!r} to send; there are: {', '.join(available)}")
        try:
            mix[name] = float(weight) if weight else 1.0
        except ValueError:
            raise PocketvlError(f"weight of {name} must be a number, not {weight!r}") from None
    return mix


def partition_of(key: bytes, partitions: int) -> int:
    """The partition kafka-python's default partitioner (Java's murmur2) gives ``key``."""
    from kafka.partitioner.default import murmur2

    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def even_keys(partitions: int, per_partition: int) -> list[bytes]:
    """``per_partition`` keys for each of ``partitions``, in turn (partition 0, 1, ..., 0,
    1, ...): sent round robin, every partition gets the same share of the records."""
    found: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    i = 0
    while any(len(keys) < per_partition for keys in found.values()):
        key = f"entity-{i}".encode()
        keys = found[partition_of(key, partitions)]
        if len(keys) < per_partition:
            keys.append(key)
        i += 1
    return [found[p][n] for n in range(per_partition) for p in range(partitions)]


def plan_keys(plan: LoadPlan) -> list[bytes]:
    if plan.even_partitions is None:
        return [f"entity-{i}".encode() for i in range(plan.keys)]
    return even_keys(plan.even_partitions, plan.keys // plan.even_partitions)


def load_examples(directory: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.*.json"))}


def _tagged_png(png: bytes, tag: bytes) -> bytes:
    """A tEXt chunk before IEND."""
    body = b"Comment\x00" + tag
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body
    return png[:-12] + chunk + struct.pack(">I", zlib.crc32(b"tEXt" + body)) + png[-12:]


def _tagged_jpeg(jpeg: bytes, tag: bytes) -> bytes:
    """A COM segment right after SOI."""
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(tag) + 2) + tag + jpeg[2:]


def _tagged(data: bytes, tag: bytes) -> bytes:
    """The same pixels in different bytes: a comment inside the file (PNG, JPEG), or bytes
    after the last one a TIFF reader looks at (its directories are found by offset)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82"):
        return _tagged_png(data, tag)
    if data.startswith(b"\xff\xd8"):
        return _tagged_jpeg(data, tag)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return data + tag
    raise PocketvlError("only a PNG, JPEG or TIFF image can be varied without a question")


def unique_variant(example: dict[str, Any], tag: str) -> dict[str, Any]:
    """``example`` changed where the cache key looks (its question or expression, or else
    the first image's bytes), so no other variant shares its answer."""
    request: dict[str, Any] = copy.deepcopy(example)
    task = request["task"]
    for text_field in ("question", "expression"):
        if isinstance(task.get(text_field), str):
            task[text_field] = f"{task[text_field]} [{tag}]"
            return request
    image = request["images"][0]
    if image.get("kind") != "inline":
        raise PocketvlError(f"{example['event_id']}: cannot vary a task without a question")
    image["data_b64"] = b64encode(_tagged(b64decode(image["data_b64"]), tag.encode())).decode()
    return request


def build(plan: LoadPlan, examples: dict[str, dict[str, Any]], prefix: str) -> list[Planned]:
    """The requests of ``plan``, in send order, with topic, key and CloudEvents headers."""
    rng = random.Random(plan.seed)
    names, weights = list(plan.mix), list(plan.mix.values())
    fresh: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    keys = plan_keys(plan)
    planned = []
    for i in range(plan.requests):
        name = rng.choices(names, weights)[0]
        earlier = fresh[name]
        repeat = bool(earlier) and rng.random() < plan.repeat_fraction
        body = rng.choice(earlier) if repeat else unique_variant(examples[name], f"u{i}")
        if not repeat:
            earlier.append(body)
        event_id = f"bench-{prefix}-{i:06d}"
        request = {**body, "event_id": event_id}
        record = request_record(prefix, request, keys[i % len(keys)], "/pocketvl/bench")
        planned.append(Planned(event_id, str(request["domain"]), repeat, record))
    return planned
