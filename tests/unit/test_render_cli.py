"""`ooto render`: a user checks what the operator would create for a kernel, with no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ooto.cli import main
from ooto.render_cli import field_path

SAMPLE = (Path(__file__).parents[2] / "examples" / "module-sample.yaml").read_text()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "module.yaml"
    path.write_text(text)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], path: str, kernel: str) -> tuple[int, str, str]:
    code = main(["render", "-f", path, "--kernel", kernel])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_literal_kernel_prints_both_daemonsets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, write(tmp_path, SAMPLE), "5.4.0-1054-gke")
    assert code == 0
    assert "matches spec.kernelMappings[1] (literal '5.4.0-1054-gke')" in out
    documents = list(yaml.safe_load_all(out))
    assert [doc["kind"] for doc in documents] == ["DaemonSet", "DaemonSet"]
    image = documents[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "quay.io/vendor/module-sample:ubuntu-5.4.0-1054-gke"
    assert "builds it first" not in out


def test_a_build_mapping_says_the_image_would_be_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, write(tmp_path, SAMPLE), "5.10.0-1-gke")
    assert code == 0
    assert "matches spec.kernelMappings[2]" in out
    assert "ooto builds it first" in out
    assert "#   value: 5.10.0-1-gke" in out
    assert "#   FROM some-image" in out


def test_no_match_explains_every_mapping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, write(tmp_path, SAMPLE), "6.0.0")
    assert code == 1
    assert "no kernel mapping matches kernel '6.0.0'" in out
    for index in range(3):
        assert f"spec.kernelMappings[{index}]:" in out


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("containerImage: quay.io/vendor/module-sample:gke", "containerImage: 3"),
            "spec.kernelMappings[2].containerImage: Input should be a valid string",
        ),
        (
            ("- literal: 5.4.0-1054-gke", "- literal: 5.4.0-1054-gke\n      regexp: x"),
            "spec.kernelMappings[1]: Value error, exactly one of literal or regexp",
        ),
        (
            ("containerImage: quay.io/vendor/module-sample:gke", "containerImage: q.io/m:${NOPE}"),
            "spec.kernelMappings[2].containerImage: unknown variable 'NOPE'",
        ),
        (
            ("regexp: '^.*\\-gke$'", "regexp: '(?<=x)'"),
            "spec.kernelMappings[2].regexp: invalid RE2",
        ),
        (("spec:", "spec: ["), "invalid YAML"),
        (("kind: Module", "kind: Other"), "expected one document of kind Module, found 0"),
    ],
)
def test_bad_input_exits_2_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], expected: str
) -> None:
    assert change[0] in SAMPLE
    path = write(tmp_path, SAMPLE.replace(*change))
    code, out, err = run(capsys, path, "5.10.0-1-gke")
    assert code == 2
    assert out == ""
    assert err.startswith(f"{path}: ")
    assert expected in err


def test_an_image_that_resolves_badly_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SAMPLE.replace("module-sample:gke", "module-sample:${KERNEL_FULL_VERSION}")
    code, _, err = run(capsys, write(tmp_path, text), ".5.0-gke")
    assert code == 2
    assert "spec.kernelMappings[2].containerImage: " in err


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "nope.yaml")
    code, _, err = run(capsys, path, "5.4")
    assert code == 2 and err.startswith(f"{path}: cannot read")


def test_field_path_formats_pydantic_locations() -> None:
    assert (
        field_path(("spec", "kernelMappings", 0, "containerImage"))
        == "spec.kernelMappings[0].containerImage"
    )
    assert field_path(()) == "(document)"
