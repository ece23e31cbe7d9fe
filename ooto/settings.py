"""Operator settings: one pydantic-settings model read from `OOTO_*` env vars and CLI flags.

Precedence, highest first: CLI flags (only those given), `OOTO_*` environment variables,
defaults. The Helm chart sets the environment; a developer running `ooto run` locally
uses flags. `Settings` is built once, in the composition root, and passed down.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ooto import __version__
from ooto.domain.validation import ModulePolicy

SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_OPERATOR_NAMESPACE = "ooto-system"
DEFAULT_KANIKO_IMAGE = "gcr.io/kaniko-project/executor:v1.23.2"
DEFAULT_BUILDAH_IMAGE = "quay.io/buildah/stable:v1.35.4"
DEFAULT_SIGNER_IMAGE = f"ooto:{__version__}"
"""The operator's own image at this version (the repository's Dockerfile installs Debian's
linux-kbuild-6.1, whose sign-file the sign Dockerfile calls by path), under the name the chart
gives it by default (`image.repository: ooto`, tag = appVersion). The chart sets the setting to
the image it deploys; `ooto run` elsewhere should name the image it pushed."""
DEFAULT_WEBHOOK_CERT_DIR = "/tmp/k8s-webhook-server/serving-certs"  # controller-runtime's

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

BuildBackendName = Literal["auto", "buildah", "kaniko", "buildconfig"]
LogFormat = Literal["auto", "json", "text"]


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each bad env var / flag and why."""


def _namespace_from_service_account() -> str:
    """In a pod the service-account mount says which namespace we run in."""
    try:
        namespace = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        return DEFAULT_OPERATOR_NAMESPACE
    return namespace or DEFAULT_OPERATOR_NAMESPACE


class Settings(BaseSettings):
    """Everything the operator can be told. Env var = `OOTO_` + upper-cased field name."""

    model_config = SettingsConfigDict(env_prefix="OOTO_", extra="forbid", frozen=True)

    watch_namespace: str | None = Field(
        default=None, description="Watch Modules in this namespace only; unset = all namespaces."
    )
    operator_namespace: str = Field(
        default_factory=_namespace_from_service_account,
        description="Namespace of the operator (its Lease lives there).",
    )
    metrics_host: str = Field(default="0.0.0.0", description="Health/metrics server address.")
    metrics_port: int = Field(
        default=8080, ge=0, le=65535, description="Health/metrics port; 0 = pick a free port."
    )
    leader_election: bool = Field(default=True, description="Act only while holding the Lease.")
    lease_name: str = Field(default="ooto-leader", description="Name of the leader-election Lease.")
    lease_duration_seconds: float = Field(
        default=15, gt=0, description="A standby takes the Lease over this long after a renewal."
    )
    renew_deadline_seconds: float = Field(
        default=10, gt=0, description="The leader stops and exits when it cannot renew in time."
    )
    retry_period_seconds: float = Field(
        default=2, gt=0, description="Interval between Lease acquire/renew attempts."
    )
    build_backend: BuildBackendName = Field(
        default="auto",
        description="auto = BuildConfig when the OpenShift build API exists, else buildah.",
    )
    buildah_image: str = Field(default=DEFAULT_BUILDAH_IMAGE, description="Pinned Buildah image.")
    signer_image: str = Field(
        default=DEFAULT_SIGNER_IMAGE,
        description="Image of sign builds: sh and Debian's sign-file at "
        "/usr/lib/linux-kbuild-6.1/scripts/sign-file (default: the operator image).",
    )
    sign_secrets_recheck_seconds: float = Field(
        default=60, gt=0, le=3600, description="Re-read signing certificates this often."
    )
    kaniko_image: str = Field(default=DEFAULT_KANIKO_IMAGE, description="Pinned Kaniko executor.")
    build_deadline_seconds: int = Field(
        default=1800, gt=0, description="A build running longer fails (activeDeadlineSeconds)."
    )
    api_concurrency: int = Field(default=32, ge=1, le=1024, description="In-flight API requests.")
    status_debounce_seconds: float = Field(
        default=0.2, ge=0, le=60, description="Module status writes are batched over this window."
    )
    log_format: LogFormat = Field(default="auto", description="auto = JSON unless on a terminal.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    allow_privileged_module_loader: bool = Field(
        default=False, description="Accept Modules whose moduleLoader asks for privileged."
    )
    firmware_host_dir: str = Field(
        default="/lib/firmware",
        pattern=r"^/([A-Za-z0-9._+-]+/?)*$",
        description="Nodes' firmware directory, where spec.modprobe.firmwarePath is copied.",
    )
    allow_host_path_volumes: bool = Field(
        default=False, description="Accept Modules whose additionalVolumes mount host paths."
    )
    allowed_service_accounts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated service accounts a Module may name for its pods (NAME, "
        "NAMESPACE/NAME or *); empty = only the namespace's default.",
    )
    webhook_port: int = Field(
        default=9443, ge=0, le=65535, description="Admission webhook HTTPS port; 0 = off."
    )
    webhook_cert_dir: Path = Field(
        default=Path(DEFAULT_WEBHOOK_CERT_DIR),
        description="Directory holding the webhook's tls.crt and tls.key (re-read on change).",
    )
    backoff_initial_seconds: float = Field(
        default=5, gt=0, description="First retry delay after a failure (then doubled)."
    )
    backoff_max_seconds: float = Field(
        default=300, gt=0, description="Longest retry delay after repeated failures."
    )

    @field_validator("watch_namespace", mode="before")
    @classmethod
    def _empty_means_all(cls, value: Any) -> Any:
        # The chart renders `OOTO_WATCH_NAMESPACE: ""` for "all namespaces".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("watch_namespace", "operator_namespace", "lease_name")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 63 or not _DNS_LABEL.match(value)):
            raise ValueError(f"{value!r} is not a valid name (lowercase DNS label, max 63 chars)")
        return value

    @field_validator("allowed_service_accounts", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # One env var or flag: "a,b,team-x/c". A YAML list rendered by the chart joins the same way.
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("allowed_service_accounts")
    @classmethod
    def _account_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            parts = item.split("/")
            if item != "*" and (len(parts) > 2 or not all(_DNS_SUBDOMAIN.match(p) for p in parts)):
                raise ValueError(f"{item!r} is not NAME, NAMESPACE/NAME or *")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> Any:
        level = str(value).strip().upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(_LOG_LEVELS)}")
        return level

    @field_validator("kaniko_image", "buildah_image", "signer_image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        last = value.rsplit("/", 1)[-1]
        if not value or " " in value or ("@" not in last and ":" not in last):
            raise ValueError(f"{value!r} must be an image reference with a tag or digest")
        return value

    @model_validator(mode="after")
    def _timings_consistent(self) -> Self:
        # Same rules as client-go's leader election: renew well before the lease runs out.
        if self.renew_deadline_seconds >= self.lease_duration_seconds:
            raise ValueError("renew_deadline_seconds must be less than lease_duration_seconds")
        if self.retry_period_seconds >= self.renew_deadline_seconds:
            raise ValueError("retry_period_seconds must be less than renew_deadline_seconds")
        if self.backoff_initial_seconds > self.backoff_max_seconds:
            raise ValueError("backoff_initial_seconds must not exceed backoff_max_seconds")
        return self

    def module_policy(self) -> ModulePolicy:
        """What Modules this operator accepts beyond the schema (webhook, operator, render)."""
        return ModulePolicy(
            allow_privileged_module_loader=self.allow_privileged_module_loader,
            allow_host_path_volumes=self.allow_host_path_volumes,
            allowed_service_accounts=frozenset(self.allowed_service_accounts),
        )

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Env + defaults, then `overrides` (CLI flags; None values mean "not given").

        Raises SettingsError with one line per problem, naming env var and flag.
        """
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        unknown = sorted(set(given) - set(cls.model_fields))
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(unknown)}")
        try:
            return cls(**given)
        except ValidationError as exc:
            raise SettingsError(_explain(exc)) from exc

    @classmethod
    def from_args(cls, args: argparse.Namespace | Mapping[str, Any]) -> Settings:
        """Settings from parsed CLI flags (see `add_arguments`); other attributes are ignored."""
        values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
        return cls.load({k: v for k, v in values.items() if k in cls.model_fields})


def _explain(exc: ValidationError) -> str:
    lines = ["invalid settings:"]
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        where = f"OOTO_{field.upper()} / --{field.replace('_', '-')}" if field else "settings"
        lines.append(f"  {where}: {error['msg']} (got {error.get('input')!r})")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One optional flag per setting (`--metrics-port`, `--no-leader-election`, ...).

    Every flag defaults to None so that `Settings.from_args` only overrides what was given.
    """
    group = parser.add_argument_group("settings (also from OOTO_* environment variables)")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description or ''} [env OOTO_{name.upper()}]".strip()
        if field.annotation is bool:
            group.add_argument(
                flag, dest=name, default=None, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            group.add_argument(flag, dest=name, default=None, metavar="VALUE", help=help_text)
