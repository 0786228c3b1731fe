"""Shared test set-up: one torch thread per xdist worker, quiet Lightning, tiny shared fixtures, and no test
reading the user's environment (their zoo, Hugging Face cache, token, mirror or offline flag)."""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import threadpoolctl
import torch

#: Variables of the user's shell that would reach into tests: their zoo (``REPRZOO_HOME``), their Hugging Face home,
#: cache, token, mirror or offline flag. Removed before anything imports ``huggingface_hub`` (whose constants read
#: them once, at import), then set or removed again around every test by ``_isolated_environment``.
USER_ENVIRONMENT = (
    "REPRZOO_HOME",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_ASSETS_CACHE",
    "HF_XET_CACHE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_ENDPOINT",
)
SESSION_HOME = Path(tempfile.gettempdir()) / f"reprzoo-test-{os.getpid()}"  # for session fixtures (shared_tiny_run)
for _name in USER_ENVIRONMENT:
    os.environ.pop(_name, None)
os.environ["REPRZOO_HOME"] = str(SESSION_HOME / "reprzoo-home")
os.environ["HF_HOME"] = str(SESSION_HOME / "hf-home")
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # two workers on two cores: no oversubscription
# one BLAS thread (numpy, scikit-learn, SciPy): tests fit many tiny problems, which threads only slow down, many
# times over on a shared machine
threadpoolctl.threadpool_limits(1)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*pin_memory.*")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path, monkeypatch):
    """Every test starts with its own empty ``REPRZOO_HOME`` and Hugging Face home, online, with no token and the
    default endpoint, whatever the shell running pytest exports; a test sets what it needs on top."""
    for name in USER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("REPRZOO_HOME", str(tmp_path / "reprzoo-home"))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    constants = sys.modules.get("huggingface_hub.constants")  # read at import: reset what a test could depend on
    if constants is not None:
        values = {
            "HF_HUB_OFFLINE": False,
            "HF_HOME": str(hf_home),
            "HF_HUB_CACHE": str(hf_home / "hub"),
            "HF_TOKEN_PATH": str(hf_home / "token"),
            "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        }
        for name, value in values.items():
            if hasattr(constants, name):
                monkeypatch.setattr(constants, name, value)


def quiet_trainer_kwargs(root, **overrides):
    """Trainer options for a few CPU steps without logs, checkpoints or progress bars (2 train batches of one
    epoch, 2 validation batches unless ``overrides`` say otherwise), writing under ``root``."""
    return {
        **dict(
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
            default_root_dir=str(root),
        ),
        **overrides,
    }


@pytest.fixture
def tiny_trainer_kwargs(tmp_path):
    """Trainer options for a few CPU steps without logs, checkpoints or progress bars."""
    return quiet_trainer_kwargs(tmp_path)
