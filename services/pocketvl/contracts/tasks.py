"""What every task model shares: the ``type`` discriminator and the rules for user text.

The task models themselves are declared once each, with their prompt, parser and input
rules, in their domain's module (``pocketvl.domains``); ``pocketvl.domains.registry``
collects them."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from pocketvl.contracts.common import Strict

# Markup that only the service may put into a prompt: a user string carrying it could
# desynchronise image features from their placeholders or forge conversation turns.
RESERVED_MARKUP = ("<image>", "<img>", "</img>", "<IMG_CONTEXT>", "<|", "|>")


def _no_reserved_markup(text: str) -> str:
    for markup in RESERVED_MARKUP:
        if markup in text:
            raise ValueError(f"text must not contain the reserved markup {markup!r}")
    return text


UserText = Annotated[str, AfterValidator(_no_reserved_markup)]
Question = Annotated[UserText, Field(min_length=1, max_length=4000)]


class TaskBase(Strict):
    """A task's parameters; ``type`` names the task within its domain (a ``Literal`` in
    each concrete model, which is what a request's ``task`` is discriminated on)."""

    type: str
