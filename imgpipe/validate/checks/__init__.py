"""Cleaning checks as plug-ins (see :mod:`imgpipe.validate.checks.base`).

Each check module registers its :class:`Check` subclasses with ``@register`` when imported; the
imports below are the list of checks (plain imports, so the dvc.yaml deps test sees them).
:func:`registered_checks` returns one instance of each, in ``order``.
"""

from __future__ import annotations

# -- one import per check module (each registers its checks) ---------------------------------------
from imgpipe.validate.checks import faces  # noqa: E402,F401  (privacy: faces found at download)
from imgpipe.validate.checks.base import REGISTRY, Check, CheckContext, CheckResult, register


def registered_checks() -> list[Check]:
    return [cls() for cls in sorted(REGISTRY.values(), key=lambda c: (c.order, c.name))]


__all__ = ["Check", "CheckContext", "CheckResult", "register", "registered_checks"]
