"""The loader scripts ooto writes for `spec.modprobe`, run for real with /bin/sh.

A fake `modprobe` first on PATH records every call (arguments, exit code, and which firmware
files the node had at that moment) and keeps the "loaded" modules as directories of a fake
/sys/module, the way the kernel shows them. It behaves like kmod: loading needs the module under
`<dir>/lib/modules/<uname -r>`, loading a loaded module and removing an absent one succeed,
removing a module listed as in use fails with kmod's message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ooto.domain.api.module import Modprobe
from ooto.domain.modprobe import LoaderPaths, load_order, load_script, unload_order, unload_script

KERNEL = os.uname().release

FAKE_MODPROBE = textwrap.dedent(
    """\
    import json, os, shutil, sys
    args = sys.argv[1:]
    remove, root, names = False, "", []
    while args:
        arg = args.pop(0)
        if arg == "-r":
            remove = True
        elif arg == "-d":
            root = args.pop(0)
        else:
            names.append(arg)
    sysfs = os.environ["FAKE_SYSFS"]
    firmware = os.environ["FAKE_FIRMWARE"]
    in_use = set(os.environ.get("FAKE_IN_USE", "").split())
    code, message = 0, ""
    if remove:
        for name in names:
            loaded = os.path.join(sysfs, name.replace("-", "_"))
            if os.path.isdir(loaded) and name in in_use:
                code, message = 1, f"modprobe: FATAL: Module {name} is in use."
                break
            if os.path.isdir(loaded):
                shutil.rmtree(loaded)
    else:
        tree = os.path.join(root or "/", "lib/modules", os.uname().release)
        if not os.path.exists(os.path.join(tree, names[0] + ".ko")):
            code, message = 1, f"modprobe: FATAL: Module {names[0]} not found in directory {tree}"
        else:
            loaded = os.path.join(sysfs, names[0].replace("-", "_"))
            os.makedirs(loaded, exist_ok=True)
            with open(os.path.join(loaded, "taint"), "w") as taint:
                taint.write("OE\\n")  # what the kernel shows for an unsigned out-of-tree module
    files = sorted(
        os.path.relpath(os.path.join(d, f), firmware)
        for d, _, fs in os.walk(firmware) for f in fs
    )
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps({"argv": sys.argv[1:], "exit": code, "firmware": files}) + "\\n")
    if message:
        print(message, file=sys.stderr)
    sys.exit(code)
    """
)


@dataclass
class Node:
    """A node and a module image, in directories: what the loader container would see."""

    root: Path
    paths: LoaderPaths
    env: dict[str, str]

    @property
    def sysfs(self) -> Path:
        return Path(self.paths.sys_module)

    @property
    def firmware(self) -> Path:
        return Path(self.paths.firmware)

    def image_module(self, dir_name: str, name: str) -> None:
        tree = Path(dir_name) / "lib/modules" / KERNEL
        tree.mkdir(parents=True, exist_ok=True)
        (tree / f"{name}.ko").write_bytes(b"\x7fELF")

    def load(self, name: str) -> None:
        (self.sysfs / name).mkdir()

    def loaded(self) -> set[str]:
        return {p.name for p in self.sysfs.iterdir()}

    def calls(self) -> list[dict[str, Any]]:
        log = Path(self.env["FAKE_LOG"])
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]

    def run(self, script: str, in_use: str = "") -> subprocess.CompletedProcess[str]:
        env = {**self.env, "FAKE_IN_USE": in_use}
        return subprocess.run(
            ["/bin/sh", "-c", script],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def run_loader(self, script: str, in_use: str = "") -> subprocess.CompletedProcess[str]:
        """Run the load script as the container would, and stop it (SIGTERM) once it waits."""
        env = {**self.env, "FAKE_IN_USE": in_use}
        process = subprocess.Popen(
            ["/bin/sh", "-c", script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        first = process.stdout.readline()
        if first.startswith("ooto: loaded"):
            _children_when_waiting(process.pid)
            process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        return subprocess.CompletedProcess(process.args, process.returncode, first + out, err)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "modprobe"
    fake.write_text(f"#!{sys.executable}\n{FAKE_MODPROBE}")
    fake.chmod(0o755)
    paths = LoaderPaths(firmware=str(tmp_path / "host-firmware"), sys_module=str(tmp_path / "sys"))
    Path(paths.firmware).mkdir()
    Path(paths.sys_module).mkdir()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "calls.jsonl"),
        "FAKE_SYSFS": paths.sys_module,
        "FAKE_FIRMWARE": paths.firmware,
    }
    return Node(tmp_path, paths, env)


def driver(node: Node, **fields: Any) -> Modprobe:
    """my_driver (needs my-core loaded first) in the image under <tmp>/opt, with firmware."""
    dir_name = str(node.root / "opt")
    for name in ("my_driver", "my-core"):
        node.image_module(dir_name, name)
    firmware = node.root / "image-firmware"
    (firmware / "acme").mkdir(parents=True)
    (firmware / "acme" / "fw.bin").write_bytes(b"fw")
    (firmware / "top.bin").write_bytes(b"top")
    values: dict[str, Any] = {
        "module_name": "my_driver",
        "dir_name": dir_name,
        "parameters": ["debug=1", "names=a b"],
        "modules_loading_order": ["my_driver", "my-core"],
        "in_tree_modules_to_remove": ["nouveau", "not_loaded"],
        "firmware_path": str(firmware),
        **fields,
    }
    return Modprobe(**values)


class TestLoad:
    def test_removes_in_tree_modules_copies_firmware_then_loads_in_order(self, node: Node) -> None:
        spec = driver(node)
        node.load("nouveau")

        done = node.run_loader(load_script(spec, node.paths))

        assert done.returncode == 0, done.stderr
        opt = spec.dir_name
        assert node.argvs() == [
            ["-r", "nouveau"],
            ["-d", opt, "my-core"],
            ["-d", opt, "my_driver", "debug=1", "names=a b"],
        ], "in-tree first (only the loaded one), dependency before moduleName, parameters last"
        calls = node.calls()
        assert calls[0]["firmware"] == [], "firmware is copied after the in-tree removal"
        assert calls[1]["firmware"] == ["acme/fw.bin", "top.bin"], "and before the first load"
        assert node.loaded() == {"my_core", "my_driver"}
        assert "ooto: loaded my-core my_driver" in done.stdout

    def test_an_image_without_modules_for_this_kernel_fails_before_touching_the_node(
        self, node: Node
    ) -> None:
        spec = driver(node, dir_name=str(node.root / "empty"))
        node.load("nouveau")

        done = node.run_loader(load_script(spec, node.paths))

        assert done.returncode == 1
        assert f"has no {node.root}/empty/lib/modules/<kernel> for kernel {KERNEL}" in done.stderr
        assert node.calls() == [] and node.loaded() == {"nouveau"}
        assert list(node.firmware.iterdir()) == []

    def test_an_in_tree_module_in_use_stops_the_load(self, node: Node) -> None:
        spec = driver(node)
        node.load("nouveau")

        done = node.run_loader(load_script(spec, node.paths), in_use="nouveau")

        assert done.returncode == 1
        assert "could not unload the in-tree module nouveau (in use?)" in done.stderr
        assert [call["exit"] for call in node.calls()] == [1]
        assert node.loaded() == {"nouveau"}

    def test_an_in_tree_module_named_like_ours_is_replaced_once_not_on_every_restart(
        self, node: Node
    ) -> None:
        spec = driver(node, in_tree_modules_to_remove=["my_driver"], modules_loading_order=[])
        node.load("my_driver")  # the node booted with the in-tree my_driver

        first = node.run_loader(load_script(spec, node.paths))
        restart = node.run_loader(load_script(spec, node.paths), in_use="my_driver")

        assert first.returncode == 0 and restart.returncode == 0, restart.stderr
        load = ["-d", spec.dir_name, "my_driver", "debug=1", "names=a b"]
        assert node.argvs() == [["-r", "my_driver"], load, load], (
            "the restarted container leaves its own (out-of-tree) my_driver loaded"
        )

    def test_a_module_that_fails_to_load_fails_the_container(self, node: Node) -> None:
        spec = driver(node, modules_loading_order=["my_driver", "missing"])

        done = node.run_loader(load_script(spec, node.paths))

        assert done.returncode == 1
        assert "could not load missing" in done.stderr
        assert node.argvs()[-1] == ["-d", spec.dir_name, "missing"]
        assert "my_driver" not in node.loaded()

    def test_without_order_only_module_name_is_loaded(self, node: Node) -> None:
        spec = driver(node, modules_loading_order=[], in_tree_modules_to_remove=[], parameters=[])
        done = node.run_loader(load_script(spec, node.paths))
        assert done.returncode == 0, done.stderr
        assert node.argvs() == [["-d", spec.dir_name, "my_driver"]]

    def test_waits_without_polling_and_ends_on_sigterm(self, node: Node) -> None:
        spec = driver(node)
        env = {**node.env, "FAKE_IN_USE": ""}
        process = subprocess.Popen(
            ["/bin/sh", "-c", load_script(spec, node.paths)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert "loaded" in process.stdout.readline()
            children = _children_when_waiting(process.pid)
            assert len(children) == 1, "one sleep, no loop starting new ones"
            assert _state(process.pid) == "S", "the shell sleeps in wait, it does not spin"

            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
            assert _ends(children[0]), "the waiting sleep does not outlive the loader"
        finally:
            process.kill()
            process.wait()


class TestUnload:
    def test_unloads_in_reverse_load_order_and_removes_only_its_firmware(self, node: Node) -> None:
        spec = driver(node)
        assert node.run_loader(load_script(spec, node.paths)).returncode == 0
        (node.firmware / "acme" / "other.bin").write_bytes(b"someone else's")
        (node.firmware / "intel.bin").write_bytes(b"the node's own")
        before = len(node.calls())

        done = node.run(unload_script(spec, node.paths))

        assert done.returncode == 0, done.stderr
        assert node.argvs()[before:] == [
            ["-r", "-d", spec.dir_name, "my_driver"],
            ["-r", "-d", spec.dir_name, "my-core"],
        ]
        assert node.loaded() == set()
        remaining = sorted(str(p.relative_to(node.firmware)) for p in node.firmware.rglob("*"))
        assert remaining == ["acme", "acme/other.bin", "intel.bin"]
        assert "ooto: unloaded my_driver my-core" in done.stdout

    def test_copied_directories_are_removed_when_empty(self, node: Node) -> None:
        spec = driver(node)
        node.run_loader(load_script(spec, node.paths))
        assert node.run(unload_script(spec, node.paths)).returncode == 0
        assert list(node.firmware.iterdir()) == []

    def test_a_module_in_use_is_reported_and_the_hook_fails(self, node: Node) -> None:
        spec = driver(node)
        node.run_loader(load_script(spec, node.paths))
        before = len(node.calls())

        done = node.run(unload_script(spec, node.paths), in_use="my_driver")

        assert done.returncode == 1
        assert "Module my_driver is in use" in done.stderr
        assert "could not unload my_driver (in use?); it stays loaded" in done.stderr
        assert node.calls()[before:] == [
            {
                "argv": ["-r", "-d", spec.dir_name, "my_driver"],
                "exit": 1,
                "firmware": ["acme/fw.bin", "top.bin"],
            }
        ], "its dependency is not touched while it is loaded"
        assert node.loaded() == {"my_driver", "my_core"}
        assert (node.firmware / "top.bin").exists(), "a loaded module keeps its firmware"

    def test_unloading_what_is_not_loaded_succeeds(self, node: Node) -> None:
        spec = driver(node, firmware_path=None)
        done = node.run(unload_script(spec, node.paths))
        assert done.returncode == 0, done.stderr
        assert [call["exit"] for call in node.calls()] == [0, 0]


def test_load_and_unload_orders_mirror_each_other() -> None:
    spec = Modprobe(module_name="a", modules_loading_order=["a", "b", "c"])
    assert load_order(spec) == ["c", "b", "a"]
    assert unload_order(spec) == ["a", "b", "c"]
    assert load_order(Modprobe(module_name="a")) == ["a"]


def test_values_are_quoted_for_the_shell(node: Node) -> None:
    """The schema allows no shell syntax in names; a parameter value may hold backticks, `;`,
    `|`, `&`, spaces: each reaches modprobe as one argument, untouched."""
    nasty = "opts=`touch pwned`;x|y && (id) *"
    spec = driver(node, parameters=[nasty], modules_loading_order=[], in_tree_modules_to_remove=[])
    done = node.run_loader(load_script(spec, node.paths))
    assert done.returncode == 0, done.stderr
    assert node.argvs() == [["-d", spec.dir_name, "my_driver", nasty]]
    assert not (Path.cwd() / "pwned").exists() and not (node.root / "pwned").exists()


def _children_when_waiting(pid: int) -> list[int]:
    """The shell's children once it blocks in `wait` on its sleep (the script's last step)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        sleeping = children and all(_command(child) == "sleep" for child in children)
        if sleeping and _state(pid) == "S":
            return children
        time.sleep(0.05)
    raise AssertionError("the loader never started waiting")


def _ends(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if _state(pid) == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()
