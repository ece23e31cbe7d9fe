"""The `ooto` command line: one subcommand per user task, each delegating to its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Command = Callable[[argparse.Namespace], int]
CRD_DIR = "crds"
CHART_CRD_DIR = "charts/ooto/files/crds"


def _crds(args: argparse.Namespace) -> int:
    from ooto.domain.api.crd import all_crds, render_crd_yaml, write_crds

    if args.output == "-":  # `ooto crds --output - | kubectl apply -f -`: every CRD, one stream
        sys.stdout.write("---\n".join(render_crd_yaml(crd) for crd in all_crds().values()))
    else:
        write_crds(args.output)
        if args.output == CRD_DIR and Path(CHART_CRD_DIR).is_dir():
            write_crds(CHART_CRD_DIR)  # in the repository: the chart's copy never goes stale
    return 0


def _render(args: argparse.Namespace) -> int:
    from ooto.render_cli import render_command

    return render_command(args)


def _preflight(args: argparse.Namespace) -> int:
    from ooto.preflight_cli import preflight_command

    return preflight_command(args)


def _run(args: argparse.Namespace) -> int:
    from ooto.app import run_command

    return run_command(args)


def _cluster_up(args: argparse.Namespace) -> int:
    from ooto.testing.commands import cluster_up_command

    return cluster_up_command(args)


def _demo(args: argparse.Namespace) -> int:
    from ooto.testing.commands import demo_command

    return demo_command(args)


def _install_binaries(args: argparse.Namespace) -> int:
    from ooto.testing.binaries import install_command

    return install_command(args)


def version() -> str:
    """The installed distribution's version (pyproject.toml), or "unknown" from a bare checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("ooto")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ooto", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"ooto {version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    crds = sub.add_parser("crds", help="write the CustomResourceDefinition YAML")
    crds.add_argument(
        "--output",
        default=CRD_DIR,
        help=f"directory to write into (default: {CRD_DIR}, and {CHART_CRD_DIR} when it exists);"
        " - = stdout",
    )
    crds.set_defaults(func=_crds)

    render = sub.add_parser("render", help="print what the operator would create for one kernel")
    render.add_argument("-f", "--filename", required=True, help="Module YAML file")
    render.add_argument("--kernel", required=True, help="kernel version string of a node")
    render.add_argument(
        "--build-backend",
        choices=["kaniko", "buildah", "buildconfig"],
        default=None,
        help="build objects to show (default: OOTO_BUILD_BACKEND; auto shows buildah)",
    )
    render.add_argument(
        "--sign-cert",
        default=None,
        help="signing certificate file (PEM or DER): its fingerprint labels the sign build",
    )
    render.add_argument(
        "--firmware-host-dir",
        default=None,
        help="nodes' firmware directory (default: OOTO_FIRMWARE_HOST_DIR or /lib/firmware)",
    )
    render.set_defaults(func=_render)

    preflight = sub.add_parser(
        "preflight",
        help="check that every Module has an image for the given kernels (creates nothing)",
        description="Exit 0 when every Module is ready for every kernel (WillBuild counts as "
        "ready), 1 when some are not, 2 on bad input or when the cluster cannot be asked.",
    )
    from ooto.preflight_cli import add_arguments as add_preflight_arguments

    add_preflight_arguments(preflight)
    preflight.set_defaults(func=_preflight)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig (default: $KUBECONFIG, else the in-cluster config, else ~/.kube/config)",
    )
    from ooto.settings import add_arguments

    add_arguments(run)
    run.set_defaults(func=_run)

    cluster = sub.add_parser("cluster", help="local control plane for development")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True)
    up = cluster_sub.add_parser("up", help="start a local control plane and wait for Ctrl-C")
    up.add_argument("--registry", action="store_true", help="also start an OCI registry")
    up.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="NAME=KERNEL",
        help="add a simulated Ready node running KERNEL (repeatable)",
    )
    up.set_defaults(func=_cluster_up)
    install = cluster_sub.add_parser("install", help="install and build the control-plane binaries")
    install.set_defaults(func=_install_binaries)

    demo = sub.add_parser("demo", help="run the operator on a local control plane with a sample")
    demo.add_argument("--keep", action="store_true", help="keep running after the demo converges")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Command = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
