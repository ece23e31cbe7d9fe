"""Logging as Settings.log_format/log_level configure it (ooto.logs).

JSON lines in a container, text on a terminal, structured fields, pykka actor deaths.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pykka
import pytest

from ooto.logs import REDACTED, configure_logging, log_fields


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_auto_writes_json_lines_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("auto", "INFO", stream=out)
    logging.getLogger("ooto.test").info(
        "build started", extra=log_fields(module="ns/m", kernel="6.1.0+", reason="ImageMissing")
    )
    entry = json.loads(lines(out)[0])
    assert entry["message"] == "build started"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "ooto.test"
    assert (entry["module"], entry["kernel"], entry["reason"]) == ("ns/m", "6.1.0+", "ImageMissing")
    assert entry["time"].endswith("+00:00")


def test_auto_writes_readable_text_on_a_terminal() -> None:
    out = Terminal()
    configure_logging("auto", "INFO", stream=out)
    logging.getLogger("ooto.test").info(
        "image missing", extra=log_fields(module="ns/m", kernel="5.14.0 x", reason="Resolving")
    )
    (line,) = lines(out)
    assert " INFO  ooto.test: image missing module=ns/m " in line
    assert 'kernel="5.14.0 x"' in line
    assert line.endswith("reason=Resolving")


def test_level_filters_and_exceptions_are_kept() -> None:
    out = io.StringIO()
    configure_logging("json", "warning", stream=out)
    log = logging.getLogger("ooto.test")
    log.info("hidden")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", extra={"kernel": "6.1"})
    (line,) = lines(out)
    entry = json.loads(line)
    assert "RuntimeError: boom" in entry["exception"]
    assert entry["kernel"] == "6.1"


def test_credential_like_fields_are_masked() -> None:
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    log = logging.getLogger("ooto.test")
    log.info("pull", extra={"auth": "dXNlcjpwdw==", "image": "a:b"})
    log.info("pull", extra=log_fields(registry_password="pw", module="ns/m"))
    first, second = (json.loads(line) for line in lines(out))
    assert (first["auth"], first["image"]) == (REDACTED, "a:b")
    assert (second["registry_password"], second["module"]) == (REDACTED, "ns/m")


def test_the_python_module_attribute_is_not_mistaken_for_a_field() -> None:
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    logging.getLogger("ooto.test").info("plain")
    assert "module" not in json.loads(lines(out)[0])


class Crasher(pykka.ThreadingActor):
    def on_receive(self, message: object) -> None:
        raise ValueError("actor bug")


def test_an_actor_death_shows_in_the_log() -> None:
    """pykka reports a told message's exception only through its own logger."""
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    ref = Crasher.start()
    ref.tell("crash")
    assert ref.actor_stopped.wait(5)
    entries = [json.loads(line) for line in lines(out)]
    deaths = [e for e in entries if e["logger"] == "pykka" and e["level"] == "ERROR"]
    assert deaths, entries
    assert "ValueError: actor bug" in deaths[0]["exception"]
