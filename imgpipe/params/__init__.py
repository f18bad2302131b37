"""Typed views of ``params.yaml``: one module per section, loaded with :func:`imgpipe.params.base.load`.

Kept empty on purpose: importing a section module must not import the others.
"""
