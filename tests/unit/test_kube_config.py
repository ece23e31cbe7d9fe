"""Where `ooto run` takes its credentials from, in kubectl's and controller-runtime's order:
--kubeconfig, KUBECONFIG (a list; missing files skipped), the pod's service account,
~/.kube/config; and one line naming the cause and the fix when none works."""

from __future__ import annotations

from pathlib import Path

import pytest

from ooto.kube.config import IN_CLUSTER, KubeconfigError, resolve_kubeconfig


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("{}")
    two.write_text("{}")
    return one, two


def test_the_flag_wins_over_the_environment(files: tuple[Path, Path]) -> None:
    one, two = files
    environ = {"KUBECONFIG": str(two), "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert resolve_kubeconfig(str(one), environ) == str(one)


def test_the_kubeconfig_list_keeps_the_files_that_exist_in_order(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    one, two = files
    listed = f"{tmp_path}/missing:{two}::{one}"
    assert resolve_kubeconfig(None, {"KUBECONFIG": listed}) == f"{two}:{one}"


def test_in_a_pod_without_a_kubeconfig_the_service_account_is_used(tmp_path: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOME": str(tmp_path)}
    assert resolve_kubeconfig(None, environ) is IN_CLUSTER


def test_outside_a_pod_the_home_kubeconfig_is_the_last_resort(tmp_path: Path) -> None:
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("{}")
    assert resolve_kubeconfig(None, {"HOME": str(tmp_path)}) == str(tmp_path / ".kube/config")


@pytest.mark.parametrize(
    ("flag", "environ", "says"),
    [
        ("/nonexistent", {}, "kubeconfig /nonexistent (--kubeconfig) is not a file"),
        (None, {"KUBECONFIG": "/a:/b"}, "no file of KUBECONFIG=/a:/b exists"),
        (None, {"HOME": "/nonexistent"}, "not in a pod and no kubeconfig found"),
    ],
)
def test_nothing_usable_is_one_line_with_the_fix(
    flag: str | None, environ: dict[str, str], says: str
) -> None:
    with pytest.raises(KubeconfigError) as raised:
        resolve_kubeconfig(flag, environ)
    message = str(raised.value)
    assert message.startswith(says) and "\n" not in message
    assert message.endswith("pass --kubeconfig FILE or set KUBECONFIG to a valid kubeconfig")
