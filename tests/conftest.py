"""Shared test set-up: CPU, few threads, deterministic seeds; the ``gpu`` marker skips without CUDA."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture
def one_thread():
    """One torch thread for a test (tiny models run fastest and steadiest so, with no OpenMP spinning
    on a shared machine); the suite's setting is restored afterwards.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
