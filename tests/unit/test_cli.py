"""The command line: every flag explains itself, `--version` answers, bad preflight input."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from ooto.cli import build_parser, main, version


def _parsers(
    parser: argparse.ArgumentParser, path: str = "ooto"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_flag_of_every_command_has_help_text() -> None:
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and not (action.help or "").replace("[env OOTO_", "").strip(" ]_ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    ]
    assert not missing, f"flags without help text: {missing}"


def test_every_subcommand_has_help_text() -> None:
    for _, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                assert all(helps.values()), helps


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"ooto {version()}" and version() not in ("", "unknown")


@pytest.mark.parametrize(
    "argv",
    [
        ["preflight"],
        ["preflight", "--kernel", ""],
        ["preflight", "--kernel", " 6.1 "],
        ["preflight", "--kernel", "x" * 300],
        ["preflight", "--kernel", "6.1", "--module", "no-namespace"],
    ],
)
def test_preflight_bad_input_exits_2_before_asking_the_cluster(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # No cluster is reachable from unit tests: exit 2 here proves the input was refused first.
    assert main([*argv, "--kubeconfig", "/nonexistent"]) == 2
    assert capsys.readouterr().err.startswith("ooto preflight: ")


def test_preflight_unknown_output_format_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["preflight", "--kernel", "6.1", "-o", "xml"])
    assert exited.value.code == 2


def test_preflight_without_a_usable_kubeconfig_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preflight", "--kernel", "6.1", "--kubeconfig", "/nonexistent/kubeconfig"]) == 2
    assert (
        "kubeconfig /nonexistent/kubeconfig (--kubeconfig) is not a file" in capsys.readouterr().err
    )


def test_crds_to_stdout_is_one_stream_of_every_crd(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    assert main(["crds", "--output", "-"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in documents] == [
        "modules.ooto.sigs.k8s.io",
        "preflightvalidations.ooto.sigs.k8s.io",
    ]
