"""Settings: defaults, OOTO_* environment, CLI flags over env, and clear validation errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ooto import settings as settings_module
from ooto.domain.validation import ModulePolicy
from ooto.settings import Settings, SettingsError, add_arguments


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray OOTO_* variable or service-account file leaks into a test."""
    import os

    for key in list(os.environ):
        if key.startswith("OOTO_"):
            monkeypatch.delenv(key)
    monkeypatch.setattr(
        settings_module, "SERVICE_ACCOUNT_NAMESPACE_FILE", tmp_path / "missing-namespace"
    )


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", default=None)
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_match_the_documented_values() -> None:
    s = Settings.load()
    assert s.watch_namespace is None
    assert s.operator_namespace == "ooto-system"
    assert (s.metrics_host, s.metrics_port) == ("0.0.0.0", 8080)
    assert s.leader_election is True
    assert s.lease_name == "ooto-leader"
    assert (s.lease_duration_seconds, s.renew_deadline_seconds, s.retry_period_seconds) == (
        15,
        10,
        2,
    )
    assert s.build_backend == "auto"
    assert s.kaniko_image == "gcr.io/kaniko-project/executor:v1.23.2"
    assert s.buildah_image == "quay.io/buildah/stable:v1.35.4"
    assert s.signer_image == "ooto:0.1.0"  # the operator image of this release
    assert s.build_deadline_seconds == 1800
    assert s.api_concurrency == 32
    assert s.status_debounce_seconds == 0.2
    assert (s.log_format, s.log_level) == ("auto", "INFO")
    assert s.allow_privileged_module_loader is False
    assert s.allow_host_path_volumes is False
    assert s.allowed_service_accounts == ()
    assert (s.webhook_port, s.webhook_cert_dir) == (
        9443,
        Path("/tmp/k8s-webhook-server/serving-certs"),
    )
    assert (s.backoff_initial_seconds, s.backoff_max_seconds) == (5, 300)


def test_operator_namespace_comes_from_the_service_account_mount_in_a_pod(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sa_file = tmp_path / "namespace"
    sa_file.write_text("kmods\n")
    monkeypatch.setattr(settings_module, "SERVICE_ACCOUNT_NAMESPACE_FILE", sa_file)
    assert Settings.load().operator_namespace == "kmods"


def test_environment_variables_set_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OOTO_WATCH_NAMESPACE", "team-a")
    monkeypatch.setenv("OOTO_METRICS_PORT", "9090")
    monkeypatch.setenv("OOTO_LEADER_ELECTION", "false")
    monkeypatch.setenv("OOTO_BUILD_BACKEND", "kaniko")
    monkeypatch.setenv("OOTO_LOG_LEVEL", "debug")
    s = Settings.load()
    assert s.watch_namespace == "team-a"
    assert s.metrics_port == 9090
    assert s.leader_election is False
    assert s.build_backend == "kaniko"
    assert s.log_level == "DEBUG"


def test_empty_watch_namespace_means_all_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart renders an empty string when no namespace is set."""
    monkeypatch.setenv("OOTO_WATCH_NAMESPACE", "")
    assert Settings.load().watch_namespace is None


def test_cli_flags_override_environment_and_absent_flags_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OOTO_METRICS_PORT", "9090")
    monkeypatch.setenv("OOTO_API_CONCURRENCY", "8")
    args = parse("--metrics-port", "9100", "--no-leader-election", "--kubeconfig", "/kc")
    s = Settings.from_args(args)
    assert s.metrics_port == 9100
    assert s.leader_election is False
    assert s.api_concurrency == 8


def test_from_args_accepts_a_plain_mapping() -> None:
    s = Settings.from_args({"watch_namespace": "x", "log_format": "json", "other": 1})
    assert (s.watch_namespace, s.log_format) == ("x", "json")


def test_every_setting_has_a_flag() -> None:
    args = parse()
    assert set(Settings.model_fields) <= set(vars(args))


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"metrics_port": 70000}, "OOTO_METRICS_PORT / --metrics-port"),
        ({"build_backend": "docker"}, "OOTO_BUILD_BACKEND"),
        ({"log_format": "xml"}, "OOTO_LOG_FORMAT"),
        ({"log_level": "chatty"}, "OOTO_LOG_LEVEL"),
        ({"api_concurrency": 0}, "OOTO_API_CONCURRENCY"),
        ({"watch_namespace": "Team_A"}, "OOTO_WATCH_NAMESPACE"),
        ({"kaniko_image": "gcr.io/kaniko-project/executor"}, "OOTO_KANIKO_IMAGE"),
        ({"buildah_image": "quay.io/buildah/stable"}, "OOTO_BUILDAH_IMAGE"),
        ({"signer_image": ""}, "OOTO_SIGNER_IMAGE"),
        ({"signer_image": "reg.example/ooto"}, "OOTO_SIGNER_IMAGE"),
    ],
)
def test_invalid_values_name_the_env_var_and_flag(overrides: dict[str, object], names: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.load(overrides)
    assert names in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"renew_deadline_seconds": 15}, "renew_deadline_seconds must be less than"),
        ({"retry_period_seconds": 10}, "retry_period_seconds must be less than"),
        ({"backoff_initial_seconds": 600}, "backoff_initial_seconds must not exceed"),
    ],
)
def test_inconsistent_timings_are_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(overrides)


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(SettingsError, match="unknown settings: metrics_prot"):
        Settings.load({"metrics_prot": 1})


def test_kaniko_image_pinned_by_digest_is_accepted() -> None:
    image = "registry.local:5000/kaniko@sha256:" + "a" * 64
    assert Settings.load({"kaniko_image": image}).kaniko_image == image


class TestModulePolicySettings:
    """allowHostPathVolumes and allowedServiceAccounts: safe by default, set by env or flag."""

    def test_the_default_policy_is_the_safe_one(self) -> None:
        policy = Settings.load().module_policy()
        assert policy == ModulePolicy()
        assert not policy.allow_host_path_volumes and not policy.allow_privileged_module_loader
        assert policy.allowed_service_accounts == frozenset()

    def test_environment_sets_the_policy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OOTO_ALLOW_HOST_PATH_VOLUMES", "true")
        monkeypatch.setenv("OOTO_ALLOWED_SERVICE_ACCOUNTS", " loader, team-a/builder ,")
        monkeypatch.setenv("OOTO_ALLOW_PRIVILEGED_MODULE_LOADER", "true")
        policy = Settings.load().module_policy()
        assert policy == ModulePolicy(
            allow_privileged_module_loader=True,
            allow_host_path_volumes=True,
            allowed_service_accounts=frozenset({"loader", "team-a/builder"}),
        )

    def test_flags_set_the_policy(self) -> None:
        args = parse("--allow-host-path-volumes", "--allowed-service-accounts", "*")
        policy = Settings.from_args(args).module_policy()
        assert policy.allow_host_path_volumes is True
        assert policy.allowed_service_accounts == frozenset({"*"})

    @pytest.mark.parametrize("value", ["Not_Valid", "a/b/c", "team a"])
    def test_a_bad_service_account_entry_is_named(
        self, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        monkeypatch.setenv("OOTO_ALLOWED_SERVICE_ACCOUNTS", value)
        with pytest.raises(SettingsError, match="OOTO_ALLOWED_SERVICE_ACCOUNTS"):
            Settings.load()


class TestWebhookSettings:
    def test_env_and_flags(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OOTO_WEBHOOK_PORT", "10443")
        monkeypatch.setenv("OOTO_WEBHOOK_CERT_DIR", "/certs")
        s = Settings.load()
        assert (s.webhook_port, s.webhook_cert_dir) == (10443, Path("/certs"))
        flagged = Settings.from_args(parse("--webhook-port", "0", "--webhook-cert-dir", "/x"))
        assert (flagged.webhook_port, flagged.webhook_cert_dir) == (0, Path("/x"))

    @pytest.mark.parametrize("port", ["-1", "65536", "https"])
    def test_a_bad_port_is_named(self, monkeypatch: pytest.MonkeyPatch, port: str) -> None:
        monkeypatch.setenv("OOTO_WEBHOOK_PORT", port)
        with pytest.raises(SettingsError, match="OOTO_WEBHOOK_PORT"):
            Settings.load()


def test_the_version_naming_the_default_signer_image_is_the_release_version() -> None:
    """ooto.__version__ names the default signer image (the operator image of this release):
    it must be the version pyproject.toml releases and the chart's appVersion deploys."""
    import tomllib

    import yaml

    from ooto import __version__

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    chart = yaml.safe_load((root / "charts/ooto/Chart.yaml").read_text())
    assert __version__ == project["version"] == chart["appVersion"]
    assert f"ooto:{__version__}" == settings_module.DEFAULT_SIGNER_IMAGE
