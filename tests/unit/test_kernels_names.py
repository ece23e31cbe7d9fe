"""Names and labels for arbitrary kernel strings: always valid, never colliding, readable."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from ooto.domain.kernels import (
    build_job_name,
    daemonset_name,
    kernel_hash,
    kernel_label_value,
    label_safe,
)

LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

label_values = st.from_regex(LABEL_VALUE, fullmatch=True).filter(lambda value: len(value) <= 63)
module_names = st.from_regex(DNS_SUBDOMAIN, fullmatch=True).filter(lambda name: len(name) <= 253)
kernels = st.text(max_size=400) | st.from_regex(r"\d\.\d+\.\d+-[-a-z0-9_.+]{0,80}", fullmatch=True)


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and LABEL_VALUE.fullmatch(value) is not None


@given(kernels)
@example("")
@example("6.1.0-rpi7-rpi-v8+")
@example("+" * 100)
@example("a" * 64)
@example("-5.4.0-")
def test_every_kernel_gets_a_valid_label_value(kernel: str) -> None:
    assert is_label_value(kernel_label_value(kernel))


@given(label_values.filter(bool))
@example("5.14.0-70.13.1.el9_0.x86_64")
@example("a" * 63)
def test_a_valid_label_value_is_kept_verbatim(kernel: str) -> None:
    assert kernel_label_value(kernel) == kernel


@given(kernels, kernels)
@example("6.1.0-v8+", "6.1.0-v8_")
@example("a" * 64, "a" * 65)
@example("", "_")
def test_two_different_kernels_never_share_a_label_or_name(first: str, second: str) -> None:
    if first == second:
        return
    assert kernel_label_value(first) != kernel_label_value(second)
    assert daemonset_name("m", "module-loader", first) != daemonset_name(
        "m", "module-loader", second
    )


def test_an_unsafe_kernel_keeps_a_readable_prefix() -> None:
    kernel = "6.1.0-rpi7-rpi-v8+"
    assert kernel_label_value(kernel) == f"6.1.0-rpi7-rpi-v8-{kernel_hash(kernel)}"
    long_kernel = "5.4.0-" + "x" * 100
    value = kernel_label_value(long_kernel)
    assert value.startswith("5.4.0-xxx") and value.endswith(kernel_hash(long_kernel))
    assert len(value) == 63


@given(module_names, kernels, st.sampled_from(["module-loader", "device-plugin"]))
@example("a" * 253, "5.4", "module-loader")
@example("a.b", "5.4", "device-plugin")
def test_daemonset_names_are_dns_labels_of_at_most_63(module: str, kernel: str, role: str) -> None:
    name = daemonset_name(module, role, kernel)  # type: ignore[arg-type]
    assert len(name) <= 63 and DNS_LABEL.fullmatch(name)
    short = "ml" if role == "module-loader" else "dp"
    assert name.endswith(f"-{short}-{kernel_hash(kernel)}")


@given(module_names, st.text(max_size=300))
def test_build_job_names_are_dns_labels_of_at_most_63(module: str, image: str) -> None:
    name = build_job_name(module, image)
    assert len(name) <= 63 and DNS_LABEL.fullmatch(name)


def test_a_short_module_name_is_kept_as_is() -> None:
    assert daemonset_name("mod", "module-loader", "5.4") == f"mod-ml-{kernel_hash('5.4')}"
    assert daemonset_name("mod", "device-plugin", "5.4") == f"mod-dp-{kernel_hash('5.4')}"


def test_modules_whose_names_would_be_cut_alike_get_different_names() -> None:
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    assert daemonset_name(long_a, "module-loader", "k") != daemonset_name(
        long_b, "module-loader", "k"
    )
    assert daemonset_name("a.b", "module-loader", "k") != daemonset_name(
        "a-b", "module-loader", "k"
    )


def test_kernel_hash_is_ten_hex_of_sha256() -> None:
    # sha256("5.4.0-1054-gke"), computed independently with sha256sum.
    assert kernel_hash("5.4.0-1054-gke") == "de90e8d2f7"


@given(st.text(max_size=300))
def test_label_safe_is_total(value: str) -> None:
    assert is_label_value(label_safe(value))


def test_only_kernel_release_strings_are_valid() -> None:
    from ooto.domain.kernels import valid_kernel

    for good in ("6.1.0-9-amd64", "5.14.0-70.13.1.el9_0.x86_64", "6.1.0-rpi7-rpi-v8+", "4.4~rc1"):
        assert valid_kernel(good), good
    for bad in ("", "6.1.0-9-amd64; touch /tmp/x $(id)", "5.4.0 x", "a" * 129, "6.1\n", "é"):
        assert not valid_kernel(bad), bad
    assert valid_kernel("a" * 128)
