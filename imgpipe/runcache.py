"""Share DVC's run cache *with* the outputs its records name: ``python -m imgpipe.runcache push|pull``.

``dvc push --run-cache`` (DVC 3.x) uploads the run records (``runs/``) but not the outputs they
name unless some pushed commit also uses them, and never the ``cache: false`` metrics
(``metrics/*.json``, tracked by git). ``dvc pull --run-cache`` likewise downloads the records only.
In another clone ``dvc repro`` then finds a record, misses its outputs and runs the stage anyway.
This module moves the records *and* every object they name, through DVC's own API, so that after
``python -m imgpipe.runcache pull`` a plain ``dvc repro`` restores each stage that anyone who
pushed has already run with the same inputs ("Stage '...' is cached - skipping run").

Usage (from the repository root; ``-r NAME`` for a remote other than the default):

    python -m imgpipe.runcache push      # after dvc repro / dvc exp run, with dvc push
    python -m imgpipe.runcache pull      # in another clone, then: dvc repro
"""

from __future__ import annotations

import argparse
import sys


def _objects(repo, records, remote: str | None, pulling: bool) -> dict:
    """``{odb: {hash_info}}`` of every output the run records name (cached or not)."""
    # A record's outputs are rebuilt as cached outputs, so `cache: false` metrics count too. For a
    # directory, DVC first fetches its `.dir` listing from the remote when pulling.
    kwargs = {"remote": remote, "force": True} if pulling else {"force": True}
    return repo.stage_cache.get_used_objs(records, **kwargs)


def push(remote: str | None = None, jobs: int | None = None) -> tuple[int, int]:
    """Upload every run record and the objects it names; ``(records, objects transferred)``."""
    from dvc.repo import Repo

    with Repo() as repo:
        records = repo.stage_cache.push(remote)
        objs = set().union(*_objects(repo, records, remote, pulling=False).values())
        return len(records), len(repo.cloud.push(objs, jobs=jobs, remote=remote).transferred)


def pull(remote: str | None = None, jobs: int | None = None) -> tuple[int, int]:
    """Download every run record and the objects it names; ``(records, objects transferred)``."""
    from dvc.repo import Repo

    with Repo() as repo:
        records = repo.stage_cache.pull(remote)
        objs = set().union(*_objects(repo, records, remote, pulling=True).values())
        return len(records), len(repo.cloud.pull(objs, jobs=jobs, remote=remote).transferred)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imgpipe.runcache", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["push", "pull"])
    parser.add_argument("-r", "--remote", default=None, help="DVC remote (default: the default remote)")
    parser.add_argument("-j", "--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    from dvc.exceptions import DvcException

    try:
        records, objects = (push if args.action == "push" else pull)(args.remote, args.jobs)
    except DvcException as exc:
        print(f"run cache {args.action} failed: {exc}", file=sys.stderr)
        return 1
    print(f"run cache {args.action}: {records} run records, {objects} objects transferred")
    return 0


if __name__ == "__main__":
    sys.exit(main())
