"""Shared test set-up: one torch thread per xdist worker, quiet Lightning, tiny shared fixtures."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

os.environ.setdefault("REPRZOO_HOME", os.path.join(os.environ.get("TMPDIR", "/tmp"), f"reprzoo-test-home-{os.getpid()}"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # two workers on two cores: no oversubscription
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*pin_memory.*")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_trainer_kwargs(tmp_path):
    """Trainer options for a few CPU steps without logs, checkpoints or progress bars."""
    return dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
