"""KafkaSettings' TLS and SASL fields as kafka-python 3's client arguments.

The same arguments go to every consumer, producer and admin client (worker, CLI, demo,
bench), through ``kafka_broker._common``. Only the arguments a setting asks for are given,
so an unset CA means kafka-python's default (the system's CAs).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kafka.net.sasl.oauth import AbstractTokenProvider

from pocketvl.secret_files import read_secret
from pocketvl.settings import KafkaSettings


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER token read from a file on every call: kafka-python asks at each
    (re)authentication, so a token that is rotated on disk (a Kubernetes projected token, a
    sidecar's refresh) is used from the next connection on without a restart."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def token(self) -> str:
        return read_secret(self.path, "kafka.sasl_oauth_token")

    def __repr__(self) -> str:
        return f"FileTokenProvider({str(self.path)!r})"


_SECRET_ARGUMENTS = ("sasl_plain_password", "ssl_password")
# kafka-python's admin client logs its whole configuration at DEBUG, passwords included.
_CONFIG_LOGGERS = ("kafka.admin.client",)


class RedactKafkaSecrets(logging.Filter):
    """Replaces password arguments in a logged kafka-python configuration by ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        # logging keeps a lone dict argument as ``args`` itself (for %(key)s formats).
        if isinstance(record.args, dict):
            record.args = _redacted(record.args)  # type: ignore[assignment]
        elif isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        return True


def _redacted(arg: object) -> object:
    if isinstance(arg, dict) and any(arg.get(key) for key in _SECRET_ARGUMENTS):
        return {k: "***" if k in _SECRET_ARGUMENTS and v else v for k, v in arg.items()}
    return arg


def _redact_config_logs() -> None:
    for name in _CONFIG_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKafkaSecrets) for f in logger.filters):
            logger.addFilter(RedactKafkaSecrets())


def security_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    """kafka-python arguments for ``settings.security_protocol`` and its TLS / SASL fields."""
    _redact_config_logs()
    protocol = settings.security_protocol
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_check_hostname"] = settings.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(settings, name)
            if path is not None:
                kwargs[name] = str(path)
        if settings.ssl_password is not None:
            kwargs["ssl_password"] = settings.ssl_password.get_secret_value()
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        if settings.sasl_mechanism == "OAUTHBEARER":
            if settings.sasl_oauth_token_file is not None:
                kwargs["sasl_oauth_token_provider"] = FileTokenProvider(
                    settings.sasl_oauth_token_file
                )
        else:
            kwargs["sasl_plain_username"] = settings.sasl_username
            if settings.sasl_password is not None:
                kwargs["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return kwargs
