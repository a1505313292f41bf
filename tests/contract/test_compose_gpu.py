"""``docker-compose.yml``'s GPU services reference only files the repository has.

Reads whatever the compose file contains: the services of the ``gpu`` profile, or, while no
service names a profile, the services that reserve a GPU. Relative bind mounts, build
contexts, Dockerfiles, env files and config/secret files must exist in the checkout, except
the directories an operator creates on the GPU server (``RUNTIME_DIRS``, each with the
command that fills it). Every ``--load-model`` must be a model of the mounted repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

# Top-level directories filled on the GPU server, not committed: what creates each.
RUNTIME_DIRS = {
    "checkpoints": "pocketvl models fetch NAME --dest checkpoints",
    "engines": "pocketvl models build --engine trtllm (build.sh inside the container)",
    "trtllm-src": "git clone --branch v<pinned release> TensorRT-LLM (examples/ for the build)",
    "model_repository_gpu": "pocketvl models build --out model_repository_gpu",
    "secrets": "deploy/compose/gen-secrets.sh (certificates and passwords, compose secrets)",
}


def gpu_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose.get("services") or {}
    profiled = {n: s for n, s in services.items() if "gpu" in (s.get("profiles") or [])}
    if profiled:
        return profiled
    return {n: s for n, s in services.items() if "nvidia" in str(s.get("deploy", ""))}


def _bind_sources(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host source, container target) of each bind mount; named volumes left out."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else parts[0]
        else:
            source, target = str(volume.get("source", "")), str(volume.get("target", ""))
        if source.startswith((".", "/", "~")):
            out.append((source, target))
    return out


def _repo_path(root: Path, reference: str) -> tuple[Path, bool]:
    """The path in the checkout, and whether it is an operator-created runtime directory."""
    path = (root / reference).resolve()
    top = path.relative_to(root.resolve()).parts[:1]
    return path, bool(top) and top[0] in RUNTIME_DIRS


def problems(compose: dict[str, Any], root: Path) -> list[str]:
    found = []
    services = gpu_services(compose)
    if not services:
        return ["no GPU services (no `gpu` profile and no service reserving a GPU)"]
    for name, service in services.items():
        files: list[str] = []
        mounts = {}
        for source, target in _bind_sources(service):
            if source.startswith(("/", "~")):
                continue  # a host path outside the repository, not ours to check
            files.append(source)
            mounts[target] = source
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            files += [context, str(Path(context) / (dockerfile or "Dockerfile"))]
        env_files = service.get("env_file") or []
        files += [env_files] if isinstance(env_files, str) else list(env_files)
        for kind in ("configs", "secrets"):
            for ref in service.get(kind) or []:
                key = ref if isinstance(ref, str) else ref.get("source")
                spec = (compose.get(kind) or {}).get(key) or {}
                files += [spec["file"]] if "file" in spec else []
        for ref in files:
            path, runtime = _repo_path(root, ref)
            if not runtime and not path.exists():
                found.append(f"{name}: {ref} is not in the repository")
        command = service.get("command") or []
        words = command.split() if isinstance(command, str) else [str(w) for w in command]
        options = dict(w.split("=", 1) for w in words if w.startswith("--") and "=" in w)
        repository = mounts.get(options.get("--model-repository", ""))
        loads = [w.split("=", 1)[1] for w in words if w.startswith("--load-model=")]
        if repository is not None and not _repo_path(root, repository)[1]:
            for model in loads:
                if not (root / repository / model / "config.pbtxt").is_file():
                    found.append(f"{name}: --load-model={model} is not in {repository}")
    return found


def test_gpu_services_reference_only_files_the_repository_has() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert problems(compose, REPO) == []


def test_a_missing_file_or_model_is_caught() -> None:
    service = {
        "profiles": ["gpu"],
        "build": {"context": ".", "dockerfile": "Dockerfile.gpu"},
        "volumes": ["./model_repository:/models:ro", "./checkpoints:/checkpoints:ro"],
        "env_file": ["deploy/gpu.env"],
        "command": ["tritonserver", "--model-repository=/models", "--load-model=no_such_model"],
    }
    found = problems({"services": {"triton": service}}, REPO)
    assert found == [
        "triton: Dockerfile.gpu is not in the repository",
        "triton: deploy/gpu.env is not in the repository",
        "triton: --load-model=no_such_model is not in ./model_repository",
    ]
    service["profiles"] = ["cpu"]
    assert problems({"services": {"triton": service}}, REPO)[0].startswith("no GPU services")
