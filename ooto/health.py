"""Whether this replica is alive, as `/healthz` reports it and as the leader-election loop obeys.

Alive means every part that must run does: each supervised task (informers, the event recorder,
leader election) is running and not failing over and over (`ooto.kube.tasks`: `FAILURE_LIMIT`
failures in a row), and the actor system's roots (`OperatorRoot`, `NodeTracker`) are alive. A
replica that is not alive gives its Lease up and exits 1 (`ooto.app`), so the Deployment starts a
fresh one; the liveness probe is the backstop when the process cannot even do that.
"""

from __future__ import annotations

from typing import Protocol

from ooto.kube.tasks import SupervisedTask


class HealthParts(Protocol):
    """What one leadership term (`ooto.operator.Operator`) reports about itself."""

    def is_synced(self) -> bool: ...

    def problems(self) -> list[str]: ...


class Health:
    """`HealthSource` for the server: alive (above); ready once synced, or standing by."""

    def __init__(self) -> None:
        self.operator: HealthParts | None = None
        self.standby = False
        self.tasks: list[SupervisedTask] = []  # the process's own (leader election)

    def problems(self) -> list[str]:
        """Why this replica is not alive; empty when it is."""
        found = [problem for task in self.tasks if (problem := task.problem())]
        if self.operator is not None:
            found += self.operator.problems()
        return found

    def is_alive(self) -> bool:
        return not self.problems()

    def is_synced(self) -> bool:
        if self.operator is None:
            return self.standby
        return self.operator.is_synced()
