"""Cleaning checks as plug-ins (see :mod:`imgpipe.validate.checks.base`).

Each check module registers its :class:`Check` subclasses with ``@register`` when imported; the
imports below are the list of checks (plain imports, so the dvc.yaml deps test sees them).
:func:`registered_checks` returns one instance of each, in ``order``.
"""

from __future__ import annotations

# -- one import per check module (each registers its checks) ---------------------------------------
import imgpipe.validate.checks.boxes  # noqa: F401  box_* checks (labels.task detection)
import imgpipe.validate.checks.duplicates  # noqa: F401
import imgpipe.validate.checks.faces  # noqa: F401  face review rows (privacy: faces found at download)
import imgpipe.validate.checks.label_issues  # noqa: F401
import imgpipe.validate.checks.ood  # noqa: F401  images that belong to no class
import imgpipe.validate.checks.outliers  # noqa: F401
from imgpipe.validate.checks.base import REGISTRY, Check, CheckContext, CheckResult, register


def registered_checks() -> list[Check]:
    return [cls() for cls in sorted(REGISTRY.values(), key=lambda c: (c.order, c.name))]


__all__ = ["Check", "CheckContext", "CheckResult", "register", "registered_checks"]
