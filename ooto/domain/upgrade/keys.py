"""Label and annotation keys ooto puts on Nodes for one Module.

A key's name part (after the `/`) is at most 63 characters. `<namespace>.<name>` is used verbatim
when it fits. Otherwise it is shortened deterministically: the first 46 characters of
`<namespace>.<name>` (trailing `-` and `.` dropped), then `-` and 16 hex digits of
sha256(`<namespace>/<name>`). The hash is over the unambiguous `namespace/name` pair, so two
Modules get the same shortened key only if 64-bit hashes collide or someone crafts a Module whose
verbatim name part equals another Module's shortened form. `status.readyLabel` reports the key.
"""

from __future__ import annotations

import hashlib

READY_LABEL_PREFIX = "ready.ooto.sigs.k8s.io"
UPGRADE_ANNOTATION_PREFIX = "upgrade.ooto.sigs.k8s.io"
SKIP_LABEL = "ooto.sigs.k8s.io/upgrade.skip"
"""A node labelled with this key and value "true" stays on its current module loader."""

MAX_NAME_PART = 63
HASH_HEX = 16


def module_name_part(namespace: str, name: str) -> str:
    """`<namespace>.<name>`, shortened with a hash when over 63 characters (see module doc)."""
    verbatim = f"{namespace}.{name}"
    if len(verbatim) <= MAX_NAME_PART:
        return verbatim
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:HASH_HEX]
    readable = verbatim[: MAX_NAME_PART - HASH_HEX - 1].rstrip("-.")
    return f"{readable}-{digest}"


def ready_label_key(namespace: str, name: str) -> str:
    """The Node label that is "true" while this Module's loader pod on the node is Ready."""
    return f"{READY_LABEL_PREFIX}/{module_name_part(namespace, name)}"


def upgrade_annotation_key(namespace: str, name: str) -> str:
    """The Node annotation holding this Module's upgrade record for the node (see record.py)."""
    return f"{UPGRADE_ANNOTATION_PREFIX}/{module_name_part(namespace, name)}"
