"""The task table of the README and of ``pocketvl tasks``, rendered from the registry."""

from __future__ import annotations

from pocketvl.domains.registry import Registry

TABLE_HEADER = (
    "| domain / task | task fields | input | sent to the model as | typed `answer` (`kind`) "
    "| served by | eval metric |\n"
    "|---|---|---|---|---|---|---|\n"
)


def tasks_table(registry: Registry) -> str:
    """One Markdown row per task, in registry order."""
    rows = [
        f"| {spec.domain} / `{spec.name}` | {spec.docs.fields} | {spec.docs.inputs} "
        f"| {spec.docs.sent_as} | {spec.docs.answer} | `*-DA-{spec.checkpoint}` "
        f"| `{spec.metric}` |\n"
        for spec in registry
    ]
    return TABLE_HEADER + "".join(rows)
