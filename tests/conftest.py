"""What several test modules share."""

import pytest
import torch

from minisora.dit import DiT


@pytest.fixture
def trained_looking():
    """Makes a DiT whose every weight is random and non-zero, so no block is the identity by its initialisation."""
    def make(config) -> DiT:
        torch.manual_seed(0)
        model = DiT(config)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.2)
        return model
    return make
