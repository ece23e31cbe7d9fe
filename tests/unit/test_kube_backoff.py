"""Backoff: doubling delays with jitter, capped, and reset after success."""

import pytest

from ooto.kube.backoff import Backoff


def test_delays_double_within_the_jitter_band_and_stop_at_the_cap() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    for ceiling in (1.0, 2.0, 4.0, 8.0, 8.0, 8.0):
        assert ceiling / 2 <= backoff.next() <= ceiling


def test_jitter_spreads_clients_apart() -> None:
    delays = {Backoff(initial=1.0, maximum=1.0).next() for _ in range(50)}
    assert len(delays) > 40


def test_reset_starts_over() -> None:
    backoff = Backoff(initial=1.0, maximum=60.0)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.next() <= 1.0


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(initial=0)
    with pytest.raises(ValueError):
        Backoff(initial=10, maximum=1)
