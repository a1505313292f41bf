"""What the deployment files (docker-compose.yml, deploy/k8s/) are checked against: the
settings model, the shipped routing table and the generated Triton model repository."""

from __future__ import annotations

import json
import typing
from pathlib import Path

from pydantic import BaseModel, SecretStr

from pocketvl.settings import Route, RoutingSettings, Settings
from tests.conftest import REPO

ROUTES_FILE = REPO / "deploy" / "k8s" / "routes.json"
MODEL_REPOSITORY = REPO / "model_repository"
# Read by the Triton Python-backend model (pocketvl.serving.triton_model), not by Settings.
TRITON_MODEL_ENV = {"POCKETVL_CHECKPOINT_DIR"}


def _fields(model: type[BaseModel]) -> dict[str, object]:
    return {name: info.annotation for name, info in model.model_fields.items()}


def _is_secret(annotation: object) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def env_name_problem(name: str) -> str | None:
    """Why ``name`` does not set a Settings field (None when it does). ``POCKETVL_X`` is a
    top-level field, ``POCKETVL_SECTION__FIELD`` a section's field, and ``..._FILE`` may also
    name a SecretStr field read from a file."""
    if not name.startswith("POCKETVL_"):
        return f"{name}: not a POCKETVL_ variable"
    parts = name.removeprefix("POCKETVL_").lower().split("__")
    fields = _fields(Settings)
    if len(parts) == 2:
        section = Settings.model_fields.get(parts[0])
        annotation = section.annotation if section else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return f"{name}: Settings has no section {parts[0]!r}"
        fields = _fields(annotation)
    elif len(parts) != 1:
        return f"{name}: more than one '__'"
    field = parts[-1]
    if field in fields:
        return None
    secret = field.removesuffix("_file")
    if field.endswith("_file") and secret in fields:
        if _is_secret(fields[secret]):
            return None
        return f"{name}: {secret} is not a SecretStr, so it cannot be read from a file"
    return f"{name}: Settings has no field {'.'.join(parts)}"


def env_problems(names: typing.Iterable[str]) -> list[str]:
    return [p for n in sorted(names) if (p := env_name_problem(n))]


def production_routes() -> dict[str, Route]:
    """The shipped routing table, validated as the worker validates POCKETVL_ROUTING__ROUTES."""
    raw = json.loads(ROUTES_FILE.read_text())
    return RoutingSettings.model_validate({"routes": raw}).routes


def routed_models() -> set[str]:
    return {route.triton_model for route in production_routes().values()}


def repository_models() -> set[str]:
    return {p.parent.name for p in MODEL_REPOSITORY.glob("*/config.pbtxt")}


def load_models(args: typing.Iterable[str]) -> list[str]:
    """The models a tritonserver command line loads (``--load-model=NAME``)."""
    return [a.split("=", 1)[1] for a in args if a.startswith("--load-model=")]


def relative(path: str) -> Path:
    """A repository path as compose and kustomize write it (``./deploy/...``)."""
    return REPO / path.removeprefix("./")
