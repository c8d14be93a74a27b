import os

import pytest
import torch

# Two cores, two xdist workers: one intra-op thread each keeps runs fast and timings stable.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
