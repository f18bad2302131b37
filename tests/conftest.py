"""Shared test setup: keep third-party telemetry off and make tests/ importable (factories)."""

import os
import sys
from pathlib import Path

os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("TQDM_DISABLE", "1")

TESTS_DIR = Path(__file__).resolve().parent
# tests/download holds the loopback servers (``servers``) that e2e and training tests use too:
# importable from any test file, also when that file runs alone.
for shared in (TESTS_DIR, TESTS_DIR / "download"):
    if str(shared) not in sys.path:
        sys.path.insert(0, str(shared))


def pytest_collection_modifyitems(config, items) -> None:
    """e2e tests last (a stable sort keeps file order otherwise): the unit tiers run while the e2e
    tier's shared project is reproduced in the background (tests/e2e/conftest.py), so no worker
    sits waiting for it, and a broken unit test shows up within the first minutes."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
