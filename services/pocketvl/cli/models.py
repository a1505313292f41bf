"""``pocketvl models``: the checkpoint catalog, fetch/verify, routes and the Triton repository."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pocketvl.cli.extras import require_extra
from pocketvl.devstack import paths
from pocketvl.errors import PocketvlError


def cmd_models(args: argparse.Namespace) -> int:
    from pocketvl.modeltools import catalog

    if args.action == "list":
        columns = ("checkpoint", "hub id", "LLM", "template", "GB", "tiles")
        print("{:32} {:42} {:9} {:15} {:>5} {:>5}  Triton model".format(*columns))
        for e in catalog.CATALOG:
            print(
                f"{e.name:32} {e.hub_id:42} {e.backbone:9} {e.template:15} {e.disk_gb:5.2f} "
                f"{e.max_tiles:5}  {e.triton_model}"
            )
        return 0
    if args.action == "routes":
        print(json.dumps(catalog.routes_for(args.size), indent=2))
        return 0
    if args.action == "repository":
        return _cmd_repository(args)
    if args.action in ("verify", "fetch") and not args.target:
        what = "a checkpoint directory" if args.action == "verify" else "a catalog name"
        raise PocketvlError(f"models {args.action} needs {what} (see `pocketvl models list`)")
    if args.action in ("verify", "fetch"):
        require_extra("serving", f"models {args.action}")
    if args.action == "verify":
        from pocketvl.modeltools.verify import verify_checkpoint

        for line in verify_checkpoint(Path(args.target)):
            print(line)
        return 0
    if args.action == "fetch":
        from pocketvl.modeltools.fetch import fetch_checkpoint

        try:
            entry = catalog.find(args.target)
        except KeyError as exc:
            raise PocketvlError(str(exc.args[0])) from exc
        path = fetch_checkpoint(
            entry, Path(args.dest), endpoint=args.endpoint, revision=args.revision
        )
        print(f"{entry.hub_id} -> {path}")
        return 0
    print(f"tiny checkpoints in {paths.ensure_tiny_checkpoints()}")
    return 0


def _cmd_repository(args: argparse.Namespace) -> int:
    from pocketvl.modeltools import repository as model_repo
    from pocketvl.modeltools.sizing import SizingError

    options = model_repo.RepositoryOptions(
        kind=args.kind,
        dtype=args.dtype,
        instances=args.instances,
        max_batch_size=args.max_batch_size,
        dummy_weights=args.dummy_weights,
        gpu_memory_gib=args.gpu_memory_gib,
    )
    if args.check:
        stale = model_repo.repository_drift(Path(args.out), options)
        if stale:
            print(f"{args.out}: out of date: {', '.join(stale)} (rerun without --check)")
            return 1
        print(f"{args.out}: up to date")
        return 0
    try:
        written = model_repo.write_repository(Path(args.out), options)
    except SizingError as exc:
        raise PocketvlError(str(exc)) from exc
    for path in written:
        print(f"wrote {path}")
    return 0


def add_models_parser(sub: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    models = sub.add_parser("models", help="the checkpoint catalog and Triton models")
    models.add_argument(
        "action", choices=["list", "routes", "fetch", "verify", "repository", "build-tiny"]
    )
    models.add_argument("target", nargs="?", help="fetch: catalog name; verify: a directory")
    models.add_argument("--dest", default=".pocketvl/checkpoints", help="fetch: parent directory")
    models.add_argument(
        "--endpoint", help="fetch: hub endpoint or mirror URL (default: HF_ENDPOINT)"
    )
    models.add_argument("--revision", help="fetch: branch, tag or commit")
    models.add_argument(
        "--size", choices=["1b", "2b", "4b"], default="1b", help="routes: default size"
    )
    models.add_argument("--out", default="model_repository", help="repository: output directory")
    models.add_argument("--kind", choices=["cpu", "gpu"], default="cpu")
    models.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    models.add_argument("--instances", type=int, default=1)
    models.add_argument("--max-batch-size", type=int, default=4)
    models.add_argument("--dummy-weights", action="store_true", help="random full-size weights")
    models.add_argument(
        "--gpu-memory-gib",
        type=float,
        help="repository: size each model's max_batch_size to this much GPU memory "
        "(overrides --max-batch-size; with --kind gpu)",
    )
    models.add_argument(
        "--check", action="store_true", help="repository: only say whether --out is up to date"
    )
    models.set_defaults(func=handler)
