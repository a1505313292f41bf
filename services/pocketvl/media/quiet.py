"""Keep the decoders' own log records and warnings out of the process's handlers.

Hostile files make tifffile log at ERROR and Pillow warn for every bad tag (a log flood a
producer controls), and pydicom's records and warnings quote element values (patient data). The
decoders' failures reach operators as reason codes instead. Global and idempotent, so
safe to call from every decode in any thread (``warnings.catch_warnings`` is not).
"""

from __future__ import annotations

import logging
import warnings

_LOGGERS = ("pydicom", "pylibjpeg", "openjpeg", "libjpeg", "tifffile")
_WARNING_MODULES = r"(pydicom|pylibjpeg|openjpeg|libjpeg|tifffile|PIL|pocketvl\.media)(\.|$)"


def quiet_decoders() -> None:
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", module=_WARNING_MODULES)
