"""Start-up checks decide between "tell the user and exit" and "ask again": an API server that
does not answer (or answers 5xx) is asked again for a while; any other refusal ends at once."""

from __future__ import annotations

from typing import Any

import pytest

from ooto.kube import Forbidden, NotFound, ObjectList, ServerError, TransientError
from ooto.preflight import ClusterUnreachableError, StartupError, check_cluster
from ooto.settings import Settings

SETTINGS = Settings.load({"leader_election": False})


class ListsModules:
    """`KubeApi.list` answering from a script of outcomes (an exception or a listing)."""

    def __init__(self, *outcomes: Exception | ObjectList) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def list(self, *_: Any, **__: Any) -> ObjectList:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


async def test_an_api_server_that_comes_back_is_waited_for() -> None:
    api = ListsModules(
        TransientError("connection refused"), ServerError(503, "x", "y"), ObjectList([], "1")
    )
    await check_cluster(api, SETTINGS)  # type: ignore[arg-type]
    assert api.calls == 3


async def test_a_refusal_ends_at_once_and_a_silent_server_after_the_patience() -> None:
    with pytest.raises(ClusterUnreachableError, match="403"):
        await check_cluster(ListsModules(Forbidden(403, "Forbidden", "no")), SETTINGS)  # type: ignore[arg-type]
    with pytest.raises(ClusterUnreachableError, match="connection refused"):
        api = ListsModules(TransientError("connection refused"))
        await check_cluster(api, SETTINGS, patience=0)  # type: ignore[arg-type]


async def test_a_missing_crd_names_the_command_that_installs_it() -> None:
    with pytest.raises(StartupError, match=r"ooto crds --output - \| kubectl apply -f -"):
        await check_cluster(ListsModules(NotFound(404, "NotFound", "")), SETTINGS)  # type: ignore[arg-type]
