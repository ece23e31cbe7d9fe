"""Exponential backoff with jitter, so that many clients retrying together spread out."""

from __future__ import annotations

import random


class Backoff:
    """Delays doubling from `initial` up to `maximum`, each drawn from [d/2, d] ("equal jitter")."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0) -> None:
        if not 0 < initial <= maximum or factor < 1:
            raise ValueError("need 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        ceiling = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        return ceiling / 2 + random.random() * ceiling / 2

    def reset(self) -> None:
        """After a success: the next failure starts from `initial` again."""
        self.attempts = 0
