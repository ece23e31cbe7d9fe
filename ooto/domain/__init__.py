"""The pure domain: models, kernel mapping, rendering, validation, digests and the decisions of
builds, signing and upgrades. Nothing here does I/O (an import-linter contract keeps it so)."""
