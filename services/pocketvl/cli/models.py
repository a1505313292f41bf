"""``pocketvl models``: the checkpoint catalog, fetch/verify, routes and the Triton repository."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pocketvl.cli.extras import require_extra
from pocketvl.devstack import paths
from pocketvl.errors import PocketvlError
from pocketvl.settings import Route


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
    if args.action == "routes" and args.size is not None:
        print(json.dumps(catalog.routes_for(args.size), indent=2))
        return 0
    if args.action == "routes":
        return _cmd_routes()
    if args.action == "repository":
        return _cmd_repository(args)
    if args.action == "build":
        return _cmd_build(args)
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


def _cmd_routes() -> int:
    """The routes in use (``POCKETVL_ROUTING__*``), each model with its readiness in Triton."""
    from pydantic import ValidationError

    from pocketvl.adapters.triton_client import TritonInference
    from pocketvl.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        raise PocketvlError(f"invalid settings (POCKETVL_* environment):\n{exc}") from exc
    source = settings.routing.routes_file or "POCKETVL_ROUTING__ROUTES (or the defaults)"
    triton = TritonInference(settings.triton)
    try:
        reachable = triton.reachable()
        print(f"routes from {source}; Triton at {settings.triton.url}")
        for line in route_lines(
            settings.routing.routes,
            lambda model: triton.ready(model) if reachable else None,
            settings.triton.url,
        ):
            print(line)
    finally:
        triton.close()
    return 0


def route_lines(
    routes: Mapping[str, Route], ready: Callable[[str], bool | None], triton_url: str
) -> list[str]:
    """One line per model a route names (its own, its canary, its fallback), with the
    share of keys it gets first and whether Triton has it ready (None: not reachable)."""
    from pocketvl.worker.routing import all_models

    lines = ["{:36} {:9} {:>7}  {:32} {:32} {}".format(*_ROUTE_COLUMNS)]
    for key in sorted(routes):
        route = routes[key]
        canary = route.canary.percent if route.canary is not None else 0.0
        shares = {"primary": f"{100 - canary:g}%", "canary": f"{canary:g}%", "fallback": "-"}
        for role, model, checkpoint in all_models(route):
            state = ready(model)
            said = (
                f"unknown (Triton unreachable at {triton_url})"
                if state is None
                else ("ready" if state else "NOT READY")
            )
            shown = key if role == "primary" else ""
            share = shares[role]
            lines.append(f"{shown:36} {role:9} {share:>7}  {model:32} {checkpoint:32} {said}")
    return lines


_ROUTE_COLUMNS = ("route", "role", "share", "Triton model", "checkpoint", "readiness")


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
        "action",
        choices=["list", "routes", "fetch", "verify", "repository", "build", "build-tiny"],
    )
    models.add_argument("target", nargs="?", help="fetch: catalog name; verify: a directory")
    models.add_argument("--dest", default=".pocketvl/checkpoints", help="fetch: parent directory")
    models.add_argument(
        "--endpoint", help="fetch: hub endpoint or mirror URL (default: HF_ENDPOINT)"
    )
    models.add_argument("--revision", help="fetch: branch, tag or commit")
    models.add_argument(
        "--size",
        choices=["1b", "2b", "4b"],
        help="routes: print the catalog's routing table for this size (JSON) instead of "
        "the routes in use and their models' readiness",
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
    _add_build_arguments(models)
    models.set_defaults(func=handler)


class _IntermixedParser(argparse.ArgumentParser):
    """Lets the optional ``target`` follow options (``models build --engine trtllm DIR``):
    plain argparse binds an optional positional to nothing at the first option."""

    _mixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._mixing:
            return super().parse_known_args(args, namespace)
        self._mixing = True
        try:
            return super().parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


def _add_build_arguments(models: Any) -> None:
    """``models build --engine trtllm|torch CHECKPOINT_DIR`` (also uses --out, --kind,
    --dtype, --instances, --max-batch-size)."""
    models.__class__ = _IntermixedParser
    models.add_argument(
        "--engine", choices=["torch", "trtllm"], help="build: which engine serves the model"
    )
    models.add_argument(
        "--engines-dir", default="engines", help="build --engine trtllm: where build.sh goes"
    )


def _cmd_build(args: argparse.Namespace) -> int:
    if not args.target or not args.engine:
        raise PocketvlError("models build needs --engine torch|trtllm and a checkpoint directory")
    require_extra("serving", "models build")
    from pocketvl.modeltools import build, repository, trtllm_repository

    checkpoint, out = Path(args.target), Path(args.out)
    if args.engine == "torch":
        options = repository.RepositoryOptions(
            kind=args.kind,
            dtype=args.dtype,
            instances=args.instances,
            max_batch_size=args.max_batch_size,
        )
        built = build.build_torch(checkpoint, out, options)
    else:
        trt = trtllm_repository.TrtllmOptions(
            max_batch_size=args.max_batch_size, bls_instances=args.instances
        )
        built = build.build_trtllm(checkpoint, out, Path(args.engines_dir), trt)
    for path in built.model_dirs:
        print(f"wrote {path}")
    print(f"requests carry up to {built.tiles_per_request} tiles")
    if built.script is not None:
        print(f"wrote {built.script}: run it inside {trtllm_repository.TRITON_IMAGE}:")
        print(built.script.read_text(), end="")
    return 0
