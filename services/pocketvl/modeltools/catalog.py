"""The twelve Mini-InternVL2 domain-adaptation checkpoints: hub names, LLM backbones, templates.

Sizes on disk are the hub's bf16 weights (1B: one 1.88 GB file; 2B: 4.41 GB; 4B: two shards,
4.96 + 3.34 GB). Default tile budgets follow the DA evaluations: DriveLM and remote sensing
ran with ``--dynamic --max-num 12``; the medical evaluation (GMAI-MMBench via VLMEvalKit)
used 6; BDD clips are frames of one tile each (the BDD setup is unpublished: UNCONFIRMED).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pocketvl.domains.registry import REGISTRY
from pocketvl.domains.spec import CheckpointFamily
from pocketvl.vision.templates import BACKBONE_TEMPLATES, SIZE_BACKBONES, Backbone

Size = Literal["1b", "2b", "4b"]

_DISK_GB: dict[Size, float] = {"1b": 1.88, "2b": 4.41, "4b": 8.30}
# size: (LLM backbone, conversation template, GB on disk)
SIZES: dict[Size, tuple[Backbone, str, float]] = {
    size: (SIZE_BACKBONES[size], BACKBONE_TEMPLATES[SIZE_BACKBONES[size]], gb)
    for size, gb in _DISK_GB.items()
}
# DA checkpoint family (the hub's spelling) -> default max tiles per image. The domain and
# the tasks each family serves come from the task registry.
DA_MAX_TILES: dict[CheckpointFamily, int] = {"DriveLM": 12, "BDD": 1, "RS": 12, "Medical": 6}


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # the hub repository name, e.g. Mini-InternVL2-1B-DA-DriveLM
    size: Size
    da: str  # DriveLM | BDD | RS | Medical
    domain: str
    tasks: tuple[str, ...]
    backbone: Backbone
    template: str
    disk_gb: float
    max_tiles: int

    @property
    def hub_id(self) -> str:
        return f"OpenGVLab/{self.name}"

    @property
    def triton_model(self) -> str:
        return self.name.lower().replace("-", "_")


def _entries() -> tuple[CatalogEntry, ...]:
    out = []
    for size, (backbone, template, gb) in SIZES.items():
        for da, tiles in DA_MAX_TILES.items():
            specs = [spec for spec in REGISTRY if spec.checkpoint == da]
            domain, tasks = specs[0].domain, tuple(spec.name for spec in specs)
            name = f"Mini-InternVL2-{size.upper()}-DA-{da}"
            out.append(CatalogEntry(name, size, da, domain, tasks, backbone, template, gb, tiles))
    return tuple(out)


CATALOG = _entries()


def find(name: str) -> CatalogEntry:
    """Look up by hub name or Triton model name, case-insensitively (the hub README spells
    DriveLM as Drivelm in places)."""
    wanted = name.removeprefix("OpenGVLab/").lower().replace("-", "_")
    for entry in CATALOG:
        if entry.triton_model == wanted:
            return entry
    known = ", ".join(e.name for e in CATALOG)
    raise KeyError(f"{name!r} is not in the catalog; known: {known}")


def routes_for(size: Size) -> dict[str, dict[str, object]]:
    """Routing table entries (``domain/task`` and ``domain/task/size``) for one size."""
    routes: dict[str, dict[str, object]] = {}
    for entry in CATALOG:
        for task in entry.tasks:
            route = {
                "triton_model": entry.triton_model,
                "checkpoint": entry.name,
                "max_tiles": entry.max_tiles,
            }
            routes[f"{entry.domain}/{task}/{entry.size}"] = route
            if entry.size == size:
                routes[f"{entry.domain}/{task}"] = route
    return routes
