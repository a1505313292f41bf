"""A small kustomize renderer for deploy/k8s, and a strict check of objects against the
Kubernetes API models of the ``kubernetes`` package.

No kustomize binary is on PyPI or in Debian's archive here, so the test renders the features
deploy/k8s uses, exactly as kustomize does: ``resources`` (files under the root), ``namespace``
(set on every namespaced object), ``labels`` (pairs added to metadata.labels only) and
``configMapGenerator`` (files and literals, without the name hash). Any other kustomization
field is refused, so using one means teaching this renderer first.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes.client
import yaml

SUPPORTED = {"apiVersion", "kind", "namespace", "labels", "resources", "configMapGenerator"}
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole"}
Obj = dict[str, Any]


class UnsupportedKustomization(ValueError):
    pass


def _inside(root: Path, name: str) -> Path:
    """kustomize's default load restriction: files must lie under the kustomization root."""
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise UnsupportedKustomization(f"{name} is outside {root}")
    return path


def _generated_config_map(root: Path, spec: Obj) -> Obj:
    unknown = set(spec) - {"name", "files", "literals", "options"}
    options = spec.get("options", {})
    if unknown or set(options) - {"disableNameSuffixHash"}:
        raise UnsupportedKustomization(f"configMapGenerator fields {unknown or set(options)}")
    if options.get("disableNameSuffixHash") is not True:
        raise UnsupportedKustomization("the name hash suffix is not rendered: disable it")
    data: dict[str, str] = {}
    for entry in spec.get("files", []):
        key, _, name = entry.rpartition("=")
        data[key or Path(name).name] = _inside(root, name).read_text()
    for literal in spec.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": spec["name"]},
        "data": data,
    }


def render(root: Path) -> list[Obj]:
    kustomization: Obj = yaml.safe_load((root / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise UnsupportedKustomization(f"this renderer does not know {sorted(unknown)}")
    objects: list[Obj] = []
    for name in kustomization.get("resources", []):
        objects += [o for o in yaml.safe_load_all(_inside(root, name).read_text()) if o]
    objects += [_generated_config_map(root, g) for g in kustomization.get("configMapGenerator", [])]
    namespace = kustomization.get("namespace")
    for obj in objects:
        metadata = obj.setdefault("metadata", {})
        if namespace and obj["kind"] not in CLUSTER_SCOPED:
            metadata["namespace"] = namespace
        for entry in kustomization.get("labels", []):
            if set(entry) - {"pairs"}:
                raise UnsupportedKustomization("labels: only plain pairs (no selectors/templates)")
            metadata.setdefault("labels", {}).update(entry["pairs"])
    return objects


_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (str, int, dict, list),  # IntOrString and free-form fields
}


def model_problems(value: Any, type_name: str, where: str) -> list[str]:
    """Fields the API model ``type_name`` does not have, and values of the wrong type."""
    if type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name]) and not (
            type_name == "int" and isinstance(value, bool)
        )
        return [] if ok else [f"{where}: {value!r} is not {type_name}"]
    if match := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        return [
            p for i, v in enumerate(value) for p in model_problems(v, match[1], f"{where}[{i}]")
        ]
    if match := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        if not isinstance(value, dict):
            return [f"{where}: not a mapping"]
        return [p for k, v in value.items() for p in model_problems(v, match[1], f"{where}.{k}")]
    model = getattr(kubernetes.client, type_name)
    if not isinstance(value, dict):
        return [f"{where}: not an object ({type_name})"]
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in by_json:
            problems.append(f"{where}.{key}: {type_name} has no such field")
        else:
            problems += model_problems(item, model.openapi_types[by_json[key]], f"{where}.{key}")
    return problems


def model_name(obj: Obj) -> str:
    """V1Deployment for apps/v1 Deployment, V1Service for v1 Service, ..."""
    version = obj["apiVersion"].rpartition("/")[2]
    return f"{version.capitalize()}{obj['kind']}"


def validate(obj: Obj) -> list[str]:
    """Unknown fields and wrong types (strict walk), then the models' own required-field
    checks (deserialising builds every model, whose setters refuse a missing required value)."""
    name = model_name(obj)
    where = f"{obj['kind']}/{obj['metadata'].get('name')}"
    problems = model_problems(obj, name, where)
    if not problems:
        try:
            kubernetes.client.ApiClient()._ApiClient__deserialize(obj, name)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return problems
