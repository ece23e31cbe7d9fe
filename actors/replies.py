"""Reply tags of the kernel actor: what each `IoDone` answers.

The bridge hands a tag back unchanged with the outcome of the coroutine it was given, so the actor
dispatches on the tag's type (`match`) instead of building handler names from strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from ooto.domain.reasons import Reason


@dataclass(frozen=True, slots=True)
class ImageChecked:
    image: str


@dataclass(frozen=True, slots=True)
class BuildStarted:
    image: str


@dataclass(frozen=True, slots=True)
class BuildLogRead:
    build: str
    reason: str = Reason.BUILD_FAILED  # or SignFailed
    image: str = ""  # what the failed build was making


@dataclass(frozen=True, slots=True)
class BuildDeleted:
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class FailedBuild:
    name: str
    uid: str
    image: str


@dataclass(frozen=True, slots=True)
class Applied:
    name: str
    spec_hash: str


@dataclass(frozen=True, slots=True)
class Deleted:
    name: str
    uid: str
