"""`ooto run` with the imports paid before the clock starts.

The benchmark spawns this module, waits for its `imported` line, then writes `go`: from then on
everything `ooto run` does (config, client, discovery, lists, writes) is inside the measured time,
and the interpreter's start-up and imports are not (a Deployment pays them once per pod start).
With `ready_writes.ENV` set, the ready-label writes are counted apart (see ready_writes.py).
"""

from __future__ import annotations

import os
import sys

import ooto.app  # noqa: F401  (the heavy imports: kubernetes_asyncio, aiohttp, pydantic, pykka)
from ooto.cli import main
from tests.bench import ready_writes

if __name__ == "__main__":
    if os.environ.get(ready_writes.ENV) == "1":
        ready_writes.install()
    print("imported", flush=True)
    sys.stdin.readline()
    sys.exit(main(["run", *sys.argv[1:]]))
