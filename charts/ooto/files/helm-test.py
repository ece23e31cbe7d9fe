"""`helm test`: the operator answers through its metrics Service (/readyz, then /metrics)."""

import os
import sys
import urllib.request

BASE = os.environ["OOTO_TEST_URL"]


def fetch(path: str) -> str:
    with urllib.request.urlopen(BASE + path, timeout=10) as response:  # noqa: S310 (cluster URL)
        return str(response.read().decode())


try:
    fetch("/readyz")  # a non-2xx answer raises: not ready
    metrics = fetch("/metrics")
except OSError as error:
    sys.exit(f"FAIL {BASE}: {error}")
if "ooto_" not in metrics:
    sys.exit(f"FAIL {BASE}/metrics: no ooto_ metric")
print(f"OK {BASE}: ready, {metrics.count(chr(10))} metric lines")
