"""The pipeline's stage scripts, one per ``dvc.yaml`` stage, run as ``python -m stages.<name>``.

Each holds a top-level function that does the stage's work and returns its summary, and a thin
``main()`` that runs it through :func:`imgpipe.stage.run_stage`; the logic lives in ``imgpipe``.
"""
