"""reprzoo.training.runs.save_run: a run folder from Python refuses to overwrite and to guess the data section."""

import pytest

from reprzoo.errors import ReprzooError
from reprzoo.training.runs import save_run


class _Trainer:
    max_epochs = 1

    def save_checkpoint(self, path):  # never reached: the refusals come first
        raise AssertionError("save_run wrote before checking its arguments")


class _Model:
    hparams = {"lr": 0.1}


def test_save_run_refuses_a_non_empty_folder_and_a_bare_data_section(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(ReprzooError, match="is not empty"):
        save_run(tmp_path / "run", _Trainer(), _Model(), {"class_path": "x.Y"})
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"
    with pytest.raises(ReprzooError, match="class_path"):
        save_run(tmp_path / "new", _Trainer(), _Model(), {"batch_size": 4})
    assert not (tmp_path / "new").exists()
