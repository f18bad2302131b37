"""Fixtures of the training tests."""

import pytest
from trainkit import make_images

from imgpipe.contracts import SplitArrays


@pytest.fixture
def tiny_split():
    def make(n=96, size=16, classes=3, channels=3, seed=0):
        return SplitArrays(*make_images(n, size, classes, channels, seed))
    return make
