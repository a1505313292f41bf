"""Secrets given as files: ``<field>_file`` in place of a ``SecretStr`` field.

An orchestrator mounts secrets as files (Docker and compose secrets, Kubernetes secret
volumes), so every secret setting X can be given as ``POCKETVL_<SECTION>__<X>_FILE=/path``
instead: the file is read once, at start-up, and its content becomes X. A trailing newline
is dropped (``echo secret > file`` writes one). Messages name the file, never its content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FILE_SUFFIX = "_file"


def read_secret(path: Path, setting: str) -> str:
    """The secret in ``path``, for ``setting`` (named in the error if it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"{setting}{FILE_SUFFIX}: cannot read {path}: {reason}") from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise ValueError(f"{setting}{FILE_SUFFIX}: {path} is empty")
    return secret


def resolve_secret_files(data: Any, secret_fields: tuple[str, ...]) -> Any:
    """``data`` (a section's raw input) with each ``<field>_file`` replaced by the file's
    content under ``<field>``; giving both is an error, so no one wonders which one won."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for field in secret_fields:
        file_key = field + FILE_SUFFIX
        if out.get(file_key) is None:
            out.pop(file_key, None)
            continue
        if out.get(field) is not None:
            raise ValueError(f"give {field} or {file_key}, not both")
        out[field] = read_secret(Path(out.pop(file_key)), field)
    return out
