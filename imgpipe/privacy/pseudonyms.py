"""Stable, keyed pseudonyms for annotators (emails, names, user ids from labelling tools).

``pseudonym(identity) = "annotator-" + HMAC-SHA256(key, normalised identity)[:12 hex]``. The same
person gets the same pseudonym in every run and every output while the key stays the same, so
agreement per annotator still works; without the key a pseudonym cannot be linked back to an
email (not even by hashing a list of candidate emails, which a plain hash would allow).

The key comes from the environment variable ``IMGPIPE_PSEUDONYM_KEY`` (any text; a team shares it
through its secret store so pseudonyms agree across machines), else from ``.imgpipe/pseudonym.key``
under the working directory, created on first use with 32 random bytes. That folder is ignored by
git and by DVC, so the key never reaches a git remote or a DVC remote. HMAC comes from the
standard library: no cryptography of our own.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pandas as pd

KEY_ENV = "IMGPIPE_PSEUDONYM_KEY"
KEY_FILE = Path(".imgpipe/pseudonym.key")
PREFIX = "annotator-"
DIGEST_CHARS = 12  # 48 bits: no collision in practice among a project's annotators


def load_key(key_file: Path = KEY_FILE) -> bytes:
    """The pseudonym key: ``$IMGPIPE_PSEUDONYM_KEY``, else ``key_file`` (created on first use)."""
    text = os.environ.get(KEY_ENV, "")
    if text:
        return text.encode("utf-8")
    key_file = Path(key_file)
    if key_file.exists():
        return key_file.read_bytes()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    # Created exclusively and owner-only; a concurrent creator wins and both read its key.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def normalise(identity: str) -> str:
    """Emails compare case-insensitively, so ``Ann@X.org`` and ``ann@x.org`` are one person."""
    return identity.strip().casefold()


def pseudonym(identity: str, key: bytes) -> str:
    """The pseudonym of one identity; ``""`` (no annotator) stays ``""``."""
    if not identity.strip():
        return ""
    digest = hmac.new(key, normalise(identity).encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:DIGEST_CHARS]


def pseudonymise_votes(votes: pd.DataFrame, key: bytes) -> tuple[pd.DataFrame, int]:
    """The votes table (:mod:`imgpipe.labels.votes`) with every annotator replaced by its
    pseudonym, and the number of distinct annotators replaced."""
    names = sorted({a for a in votes["annotator"] if a})
    mapping = {name: pseudonym(name, key) for name in names}
    out = votes.copy()
    out["annotator"] = out["annotator"].map(lambda a: mapping.get(a, a)).astype("str")
    return out, len(set(mapping.values()))


def apply_to_votes(votes: pd.DataFrame, cfg) -> tuple[pd.DataFrame, int]:
    """The labels stage's hook: pseudonymise when ``privacy.pseudonymise_annotators`` (``cfg`` is
    a :class:`~imgpipe.params.privacy.PrivacyParams`; the stage always passes one, whose default
    is true; None, for library callers that pass no privacy section, leaves votes as read)."""
    if cfg is None or not cfg.pseudonymise_annotators:
        return votes, 0
    if not (votes["annotator"] != "").any():
        return votes, 0  # no annotators: no key needed, none created
    return pseudonymise_votes(votes, load_key())
