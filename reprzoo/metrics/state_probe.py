"""AtariARI-style probing: one linear classifier per ground-truth state variable on frozen features.

"Unsupervised State Representation Learning in Atari" (Anand et al., 2019, arXiv:1906.08226, Sec. 5) evaluates a
representation by how well a linear classifier reads each state variable (object positions, ...) from it, each
distinct value of a variable being a class, and reports the weighted F1 score per variable and its mean.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch.utils.data import DataLoader


def probe_state_variables(
    train_features: torch.Tensor,
    train_states: Mapping[str, torch.Tensor],
    test_features: torch.Tensor,
    test_states: Mapping[str, torch.Tensor],
    max_iter: int = 1000,
) -> dict[str, dict[str, float]]:
    """Fit a multinomial logistic regression per state variable on standardised ``train_features`` and score it on
    the test split.

    Args:
        train_features: ``(n, d)`` frozen features of the training frames.
        train_states: variable name -> ``(n,)`` integer values (each distinct value is a class).
        test_features: ``(m, d)`` features of the test frames.
        test_states: variable name -> ``(m,)`` values; test values never seen in training count as errors.
        max_iter: iterations of the L-BFGS solver.
    Returns:
        variable name -> ``{"accuracy", "f1"}`` (weighted F1, as AtariARI reports), plus ``"mean"`` over variables.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"features must be (n, d) and (m, d), got {tuple(train_features.shape)} and {tuple(test_features.shape)}"
        )
    if set(train_states) != set(test_states) or not train_states:
        raise ValueError(
            f"train and test must have the same state variables, got {sorted(train_states)} and {sorted(test_states)}"
        )
    scaler = StandardScaler().fit(train_features.double().numpy())
    x_train, x_test = scaler.transform(train_features.double().numpy()), scaler.transform(test_features.double().numpy())
    results: dict[str, dict[str, float]] = {}
    for name in train_states:
        y_train, y_test = train_states[name].numpy(), test_states[name].numpy()
        if len(y_train) != len(x_train) or len(y_test) != len(x_test):
            raise ValueError(f"state variable {name!r} does not have one value per frame")
        if len(set(y_train.tolist())) < 2:  # a constant variable: predicting it needs no representation
            predicted = torch.full((len(y_test),), int(y_train[0])).numpy()
        else:
            predicted = LogisticRegression(max_iter=max_iter).fit(x_train, y_train).predict(x_test)
        results[name] = {
            "accuracy": float((predicted == y_test).mean()),
            "f1": float(f1_score(y_test, predicted, average="weighted", zero_division=0)),
        }
    results["mean"] = {k: sum(r[k] for r in results.values()) / len(results) for k in ("accuracy", "f1")}
    return results


@torch.no_grad()
def embed_dataset(
    encoder: Callable[[torch.Tensor], torch.Tensor], dataset, batch_size: int = 256, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Features of every sample of a ``(sample, label)`` dataset, in order."""
    from lightning.fabric.utilities.apply_func import move_data_to_device

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    return torch.cat([encoder(move_data_to_device(x, device)).float().cpu() for x, _ in loader])


def state_variable_probe(model: torch.nn.Module, datamodule, max_iter: int = 1000) -> dict[str, dict[str, float]]:
    """Probe ``model``'s representation (``model.embed`` or ``model(x)``) for every state variable of a datamodule
    that provides ``state_variables(split)`` (e.g. :class:`~reprzoo.datamodules.GeneratedFrames`)."""
    datamodule.setup()
    was_training = model.training
    model.eval()
    encoder = getattr(model, "embed", model)
    device = next(model.parameters()).device
    try:
        train = embed_dataset(encoder, datamodule._train, device=device)
        test = embed_dataset(encoder, datamodule._test, device=device)
    finally:
        model.train(was_training)
    return probe_state_variables(
        train, datamodule.state_variables("train"), test, datamodule.state_variables("test"), max_iter=max_iter
    )
