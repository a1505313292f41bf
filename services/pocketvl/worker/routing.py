"""Route a request to a Triton model: the most specific ``domain/task[/size]`` key wins."""

from __future__ import annotations

from pocketvl.errors import RouteError
from pocketvl.settings import Route


def resolve_route(
    routes: dict[str, Route], domain: str, task: str, size: str | None
) -> tuple[str, Route]:
    """Return (route key, route). A requested size with no route of its own is an error:
    silently serving another size would hand the caller a different model than asked for."""
    key = f"{domain}/{task}/{size}" if size else f"{domain}/{task}"
    route = routes.get(key)
    if route is None:
        known = ", ".join(sorted(k for k in routes if k.startswith(f"{domain}/"))) or "none"
        raise RouteError("no_route", f"no route for {key}; routes for {domain}: {known}")
    return key, route
