"""The validating admission webhook's server: `POST /validate-module` over TLS, on its own port.

Every replica serves it, the standby too: the answer is `ooto.domain.admission.review_response`,
pure and stateless, computed on the loop from the request alone. It never asks the actor system
anything, so a busy or dead actor system never delays a Module write.

The serving certificate is `tls.crt` + `tls.key` in the cert directory (controller-runtime's
convention; the chart mounts its Secret there). The files are checked every `CERT_POLL_SECONDS`
and a changed pair is loaded into the live TLS context, so new connections get the new
certificate without a restart when cert-manager rotates it. A pair that does not load (say, the
key written before the certificate) is never half-applied: the old one keeps serving until a
consistent pair is on disk. Until the files first appear the port stays closed and a warning
says which files are missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from ooto.domain.admission import ReviewError, encode, review_response, undecodable_response
from ooto.domain.validation import ModulePolicy
from ooto.kube.tasks import SupervisedTask, TaskObserver
from ooto.logs import log_fields

log = logging.getLogger(__name__)

PATH = "/validate-module"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CERT_POLL_SECONDS = 2.0
MAX_REVIEW_BYTES = 8 * 1024 * 1024
"""An UPDATE review carries the object twice, and etcd keeps objects up to 1.5 MiB: 8 MiB leaves
room, and bounds what any client reaching the port can make the loop decode."""

FileStamp = tuple[int, int, int]  # inode, size, mtime: a Secret volume swaps a symlink


class ReviewObserver(Protocol):
    def webhook_reviewed(self, allowed: bool) -> None: ...


class WebhookObserver(ReviewObserver, TaskObserver, Protocol):
    """`ooto.metrics.Metrics`: reviews answered, and failures of the serving task."""


class ServingCertificate:
    """A server TLS context whose certificate follows the files in `cert_dir`."""

    def __init__(self, cert_dir: Path) -> None:
        self.cert, self.key = cert_dir / CERT_FILE, cert_dir / KEY_FILE
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.loaded: tuple[FileStamp, FileStamp] | None = None
        self._refused: tuple[FileStamp, FileStamp] | None = None

    def reload_if_changed(self) -> bool:
        """Load the pair if it changed since the last load; True when the context changed."""
        try:
            stamp = (_stamp(self.cert), _stamp(self.key))
        except OSError:
            return False
        if stamp in (self.loaded, self._refused):
            return False
        try:
            # A scratch context first: a failed load_cert_chain may leave a context half-changed.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.cert, self.key)
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError, ValueError) as error:
            self._refused = stamp
            log.warning(
                "webhook certificate %s does not load (%s); keeping the previous one",
                self.cert,
                error,
                extra=log_fields(reason="CertificateInvalid"),
            )
            return False
        first = self.loaded is None
        self.loaded = stamp
        log.info(
            "webhook certificate %s from %s",
            "loaded" if first else "reloaded",
            self.cert,
            extra=log_fields(reason="CertificateLoaded"),
        )
        return True


def _stamp(path: Path) -> FileStamp:
    info = os.stat(path)
    return info.st_ino, info.st_size, info.st_mtime_ns


@dataclass
class WebhookConfig:
    policy: ModulePolicy
    cert_dir: Path
    host: str
    port: int


def make_app(policy: ModulePolicy, observer: ReviewObserver | None = None) -> web.Application:
    async def validate(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            answer = _answer(body, policy)
        except ReviewError as error:
            return web.json_response({"error": str(error)}, status=400)
        allowed = bool(answer["response"]["allowed"])
        if observer is not None:
            observer.webhook_reviewed(allowed)
        if not allowed:
            log.info(
                "admission denied: %s",
                answer["response"]["status"]["message"],
                extra=log_fields(reason="AdmissionDenied"),
            )
        return web.Response(body=encode(answer), content_type="application/json")

    app = web.Application(client_max_size=MAX_REVIEW_BYTES)
    app.router.add_post(PATH, validate)
    return app


def _answer(body: bytes, policy: ModulePolicy) -> dict[str, Any]:
    try:
        review = json.loads(body)
    except (ValueError, RecursionError):
        return undecodable_response(body)
    return review_response(review, policy)


class AdmissionServer:
    """Serves the webhook from a supervised task: waits for the certificate, binds, reloads.

    A failure (the port taken, anything unexpected) is logged and counted, and the task restarts
    with backoff (`ooto.kube.tasks`); one that keeps failing makes the replica not alive."""

    def __init__(self, config: WebhookConfig, observer: WebhookObserver | None = None) -> None:
        self.config = config
        self.certificate = ServingCertificate(config.cert_dir)
        self.serving = asyncio.Event()
        self.port: int | None = None
        self._app = make_app(config.policy, observer)
        self._runner: web.AppRunner | None = None
        self.task = SupervisedTask("admission-webhook", self._run, observer=observer)

    def start(self) -> None:
        self.task.start()

    async def stop(self) -> None:
        """Close the port; a second call does nothing."""
        await self.task.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self.serving.clear()

    async def _run(self) -> None:
        await self._until_certificate()
        if self._runner is None:
            await self._bind()
        while True:
            await asyncio.sleep(CERT_POLL_SECONDS)
            self.certificate.reload_if_changed()

    async def _until_certificate(self) -> None:
        warned = False
        while not self.certificate.reload_if_changed() and self.certificate.loaded is None:
            if not warned:
                warned = True
                log.warning(
                    "webhook waits for %s and %s; until then the API server cannot reach it",
                    self.certificate.cert,
                    self.certificate.key,
                    extra=log_fields(reason="CertificateMissing"),
                )
            await asyncio.sleep(CERT_POLL_SECONDS)

    async def _bind(self) -> None:
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(
            runner, self.config.host, self.config.port, ssl_context=self.certificate.context
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.serving.set()
        log.info(
            "admission webhook serving https on port %s%s",
            self.port,
            PATH,
            extra=log_fields(reason="WebhookServing"),
        )
