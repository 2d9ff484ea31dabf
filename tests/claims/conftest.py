"""One results folder for every claims module, so the tiny models one trains the next reuses."""

import os

import pytest


@pytest.fixture(scope="session")
def claims_results(tmp_path_factory):
    """``HARNESS_CLAIMS_RESULTS=DIR`` reuses the models cached in ``DIR/cache``; otherwise a fresh folder."""
    reuse = os.environ.get("HARNESS_CLAIMS_RESULTS")
    return reuse if reuse else tmp_path_factory.mktemp("claims")
