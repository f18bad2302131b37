"""imgpipe: the importable logic behind the DVC stages in ``stages/``."""

__version__ = "0.1.0"
