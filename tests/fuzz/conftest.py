"""The fuzz tier: Hypothesis properties on every parser of outside input.

Profiles (``IMGPIPE_FUZZ_PROFILE``): ``ci`` (the default: 50 examples per property, derandomized so
every CI run tries the same inputs, no example database) and ``long`` (``benchmarks/fuzz_long.py``:
many more examples, a fresh random seed each run).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (str(HERE), str(HERE.parent / "download")):  # fuzzing.py; the archive builders
    if path not in sys.path:
        sys.path.insert(0, path)

import fuzzing  # noqa: E402,F401 - registers and loads the profile
