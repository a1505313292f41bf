"""Every task the service answers, in one place: ``REGISTRY``.

The request and answer schemas, CLI help and ``--task`` checks, the route check, the
default routes, the checkpoint catalog's task lists, evaluation labels and metrics, the
demo and the README's task table are all derived from it. Adding a task is declaring its
``TaskSpec`` in its domain's module and listing it here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, get_args

from pocketvl.contracts.answers import TextAnswer, TypedAnswer
from pocketvl.contracts.common import ModelSize
from pocketvl.contracts.tasks import TaskBase
from pocketvl.domains import driving, medical, remote_sensing
from pocketvl.domains.spec import ParseContext, ParseStatus, TaskSpec


@dataclass(frozen=True)
class Registry:
    specs: tuple[TaskSpec[Any], ...]

    def __post_init__(self) -> None:
        keys = [spec.key for spec in self.specs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"a task is declared twice: {sorted(keys)}")
        models = [spec.model for spec in self.specs]
        if len(set(models)) != len(models):
            raise ValueError("two tasks share one request model; each needs its own")

    def __iter__(self) -> Iterator[TaskSpec[Any]]:
        return iter(self.specs)

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(spec.domain for spec in self.specs))

    def tasks(self, domain: str) -> tuple[TaskSpec[Any], ...]:
        return tuple(spec for spec in self.specs if spec.domain == domain)

    def get(self, domain: str, name: str) -> TaskSpec[Any]:
        for spec in self.specs:
            if spec.domain == domain and spec.name == name:
                return spec
        known = ", ".join(spec.name for spec in self.tasks(domain)) or "none"
        raise KeyError(f"no task {domain}/{name}; {domain} has: {known}")

    def for_task(self, task: TaskBase) -> TaskSpec[Any]:
        for spec in self.specs:
            if type(task) is spec.model:
                return spec
        raise KeyError(f"{type(task).__name__} is not a registered task model")

    def with_tasks(self, extra: Iterable[TaskSpec[Any]]) -> Registry:
        return Registry((*self.specs, *extra))

    def prompt(self, task: TaskBase) -> str:
        return self.for_task(task).prompt(task)

    def parse(
        self, task: TaskBase, raw_text: str, context: ParseContext
    ) -> tuple[ParseStatus, TypedAnswer]:
        """("ok", the typed answer) or ("unparsed", TextAnswer(text=raw_text)): total, since
        a model that rambles is an expected outcome, not a failed message."""
        answer = self.for_task(task).parse(task, raw_text, context)
        if answer is None:
            return "unparsed", TextAnswer(text=raw_text)
        return "ok", answer

    def route_problems(self, route_keys: Iterable[str]) -> list[str]:
        """Why each route key is wrong ("domain/task" or "domain/task/size" naming a
        registered task), one sentence per bad key."""
        problems = []
        names = {spec.key for spec in self.specs}
        for key in route_keys:
            parts = key.split("/")
            if len(parts) not in (2, 3) or parts[0] not in self.domains:
                problems.append(
                    f"route key {key!r} must be 'domain/task' or 'domain/task/size' "
                    f"with domain one of {', '.join(self.domains)}"
                )
            elif "/".join(parts[:2]) not in names:
                tasks = ", ".join(spec.name for spec in self.tasks(parts[0]))
                problems.append(f"route key {key!r} names no task of {parts[0]} ({tasks})")
            elif len(parts) == 3 and parts[2] not in get_args(ModelSize):
                sizes = ", ".join(get_args(ModelSize))
                problems.append(f"route key {key!r}: the size must be one of {sizes}")
        return problems


REGISTRY = Registry((*driving.SPECS, *remote_sensing.SPECS, *medical.SPECS))
