"""The votes table now lives in :mod:`imgpipe.labeltable` (below both ``labels`` and ``labelstudio``);
these names stay importable from here."""

from imgpipe.labeltable import KINDS, VOTE_COLUMNS, vote, votes_frame

__all__ = ["KINDS", "VOTE_COLUMNS", "vote", "votes_frame"]
