"""Logging setup: JSON lines in a container, readable text on a terminal.

Decisions are logged once each with structured fields passed through `extra=`:

    log.info("build started", extra=log_fields(module="ns/name", kernel=k, reason="ImageMissing"))

`log_fields` exists because `module` is a reserved LogRecord attribute (the Python module's
name): `extra={"module": ...}` raises KeyError. Other extras (`extra={"kernel": k}`) work as
usual. Both formats carry every such field at the top level. Fields whose name suggests a
credential are masked, as a last guard: no code should pass Secret content in the first place.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)
_SECRET_WORDS = ("password", "token", "secret", "auth", "dockerconfig", "credential")
REDACTED = "[redacted]"


_FIELDS_ATTR = "ooto_fields"


def log_fields(**values: Any) -> dict[str, Any]:
    """`extra=` for structured fields, any names allowed (module, kernel, reason, ...)."""
    return {_FIELDS_ATTR: values}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key == _FIELDS_ATTR and isinstance(value, dict):
            raw.update(value)
        elif key not in _RECORD_ATTRS and not key.startswith("_"):
            raw[key] = value
    return {
        key: REDACTED if any(word in key.lower() for word in _SECRET_WORDS) else value
        for key, value in raw.items()
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`12:00:01.234 INFO  ooto.x: message key=value ...` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S"
        )

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in _extras(record).items())
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {fields}{sep}{tail}"


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=')) else text


def configure_logging(
    format: Literal["auto", "json", "text"] = "auto",
    level: str | int = "INFO",
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route all logging to `stream` (stderr) in the chosen format; returns the handler.

    `auto` picks text when the stream is a terminal and JSON otherwise (a container). The
    `pykka` logger is made visible: pykka reports actor deaths only through it.
    """
    out = stream if stream is not None else sys.stderr
    if format == "auto":
        format = "text" if out.isatty() else "json"
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    pykka_logger = logging.getLogger("pykka")
    pykka_logger.disabled = False
    pykka_logger.propagate = True
    pykka_logger.setLevel(logging.NOTSET)  # follow the root level
    # One line per probe/scrape would drown the decisions.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler
