"""ooto: out-of-tree kernel modules on every node, whatever kernel it runs."""

__version__ = "0.1.0"
"""Kept equal to pyproject.toml's version and the chart's appVersion (tests/unit/test_settings.py):
it names the default signer image, the operator image of this release."""
