"""Layers of compatible representation learning: fixed classifiers (d-Simplex, Equiangular Basis Vectors) and
orthogonal maps (Householder projector, orthogonal linear layer, orthogonal-conv regulariser)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from reprzoo.losses.compatible import dsimplex_vertices, equiangular_basis_penalty, orthogonal_conv_penalty


class FixedClassifier(nn.Module):
    """A linear classifier without bias whose weights are fixed (a buffer, never trained): ``logits = f W^T``."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight.clone())

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    @property
    def in_dim(self) -> int:
        return self.weight.shape[1]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weight.T


class DSimplexClassifier(FixedClassifier):
    """The d-Simplex fixed classifier of CoReS (arXiv:2111.07632): one vertex of a regular simplex in
    ``R^(num_classes - 1)`` per class, reserved from the start for classes that arrive later, so the class
    arrangement (and with it the feature space) stays stationary across model updates."""

    def __init__(self, num_classes: int):
        super().__init__(dsimplex_vertices(num_classes))


def generate_equiangular_basis(
    num_vectors: int, dim: int, threshold: float = 0.002, lr: float = 1e-3, max_steps: int = 100_000, seed: int = 42
) -> torch.Tensor:
    """Equiangular Basis Vectors (arXiv:2303.11637): ``num_vectors`` unit vectors in ``R^dim`` with pairwise
    ``|cos| <= threshold`` (up to 1e-4, the authors' stopping rule), found as in their generator: SGD (lr 1e-3) on
    ``equiangular_basis_penalty``, re-normalising every step, from a seeded Gaussian start.

    Raises:
        RuntimeError: when ``max_steps`` do not reach the threshold (too many vectors for the dimension).
    """
    with torch.inference_mode(False), torch.enable_grad():  # also when a model is built under no_grad (a loader)
        return _equiangular_basis(num_vectors, dim, threshold, lr, max_steps, seed)


def _equiangular_basis(num_vectors: int, dim: int, threshold: float, lr: float, max_steps: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    basis = nn.Parameter(F.normalize(torch.randn(num_vectors, dim, generator=generator, dtype=torch.float64), dim=1))
    optimizer = torch.optim.SGD([basis], lr=lr)
    off_diagonal = ~torch.eye(num_vectors, dtype=torch.bool)
    for _ in range(max_steps):
        with torch.no_grad():
            basis.copy_(F.normalize(basis, dim=1))
            if (basis @ basis.T).abs()[off_diagonal].max() <= threshold + 1e-4:
                return basis.detach().to(torch.float32)
        optimizer.zero_grad()
        equiangular_basis_penalty(basis, threshold).backward()
        optimizer.step()
    raise RuntimeError(f"{num_vectors} vectors in {dim} dims did not reach |cos| <= {threshold} in {max_steps} steps")


class EquiangularBasisClassifier(FixedClassifier):
    """EBV's "predefined classifier": fixed Equiangular Basis Vectors, one per class; the logits are the cosine
    similarities of the normalised feature to each EBV divided by a temperature (0.07 in the authors' code), and
    the prediction is the nearest EBV."""

    def __init__(self, num_classes: int, dim: int, threshold: float = 0.002, temperature: float = 0.07, seed: int = 42):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        super().__init__(generate_equiangular_basis(num_classes, dim, threshold, seed=seed))
        self.temperature = temperature

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=-1) @ self.weight.T / self.temperature


class HouseholderProjector(nn.Module):
    """A (low-rank) orthogonal projection parameterised by Householder reflections.

    "Householder Projector for Unsupervised Latent Semantics Discovery" (Song, Zhang, Sebe & Wang, ICCV 2023,
    arXiv:2307.08012): ``Q = H_1 H_2 ... H_m`` with ``H_i = I - 2 v_i v_i^T / ||v_i||^2`` is orthogonal for any
    ``v_i``, so gradient steps on the ``v_i`` never leave the orthogonal group; keeping the first ``out_dim``
    columns gives a ``in_dim x out_dim`` matrix with orthonormal columns. ``m = in_dim`` reflections reach every
    orthogonal matrix (of determinant ``(-1)^m``); fewer give a cheaper, restricted family.

    Args:
        in_dim: input dimension n.
        out_dim: output dimension r <= n (``None``: n, a square orthogonal map).
        num_reflections: m (``None``: n).
    """

    def __init__(self, in_dim: int, out_dim: int | None = None, num_reflections: int | None = None):
        super().__init__()
        out_dim = in_dim if out_dim is None else out_dim
        num_reflections = in_dim if num_reflections is None else num_reflections
        if not 0 < out_dim <= in_dim:
            raise ValueError(f"out_dim must be in 1..{in_dim}, got {out_dim}")
        if num_reflections < 1:
            raise ValueError(f"num_reflections must be positive, got {num_reflections}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.vectors = nn.Parameter(torch.randn(num_reflections, in_dim) / in_dim**0.5)

    def matrix(self) -> torch.Tensor:
        """``Q[:, :out_dim]``, shape ``(in_dim, out_dim)``, orthonormal columns."""
        q = torch.eye(self.in_dim, dtype=self.vectors.dtype, device=self.vectors.device)[:, : self.out_dim]
        for v in self.vectors.flip(0):  # Q E = H_1 (H_2 (... (H_m E)))
            v = v / v.norm().clamp_min(1e-12)
            q = q - 2.0 * v[:, None] * (v @ q)[None, :]
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix()


class OrthogonalLinear(nn.Module):
    """A square linear map constrained to be orthogonal, with an optional free bias: OCA's transformation layer
    (the authors use ``torch.nn.utils.parametrizations.orthogonal`` on a ``Linear`` with bias).

    Args:
        dim: input and output dimension.
        bias: learn a bias (the authors' layer has one).
        parametrization: ``torch`` (PyTorch's orthogonal parametrisation: matrix exponential of a skew matrix) or
            ``householder`` (:class:`HouseholderProjector`).
    """

    def __init__(self, dim: int, bias: bool = True, parametrization: Literal["torch", "householder"] = "torch"):
        super().__init__()
        if parametrization == "torch":
            self.linear = parametrizations.orthogonal(nn.Linear(dim, dim, bias=False))
        elif parametrization == "householder":
            self.householder = HouseholderProjector(dim)
        else:
            raise ValueError(f"parametrization must be 'torch' or 'householder', got {parametrization!r}")
        self.parametrization = parametrization
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def matrix(self) -> torch.Tensor:
        """The orthogonal matrix Q, applied as ``x Q``."""
        if self.parametrization == "torch":
            return self.linear.weight.T
        return self.householder.matrix()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.matrix()
        return out + self.bias if self.bias is not None else out


def orthogonal_conv_regularizer(module: nn.Module) -> torch.Tensor:
    """Sum of :func:`~reprzoo.losses.compatible.orthogonal_conv_penalty` over every square, ungrouped ``Conv2d`` of
    ``module`` (with its own stride): the regulariser lambda * L_orth of Achour et al. (arXiv:2108.05623)."""
    total = None
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.kernel_size[0] == layer.kernel_size[1]:
            if layer.stride[0] != layer.stride[1]:
                continue
            penalty = orthogonal_conv_penalty(layer.weight, layer.stride[0])
            total = penalty if total is None else total + penalty
    if total is None:
        raise ValueError("module has no square Conv2d layer to regularise")
    return total


__all__ = [
    "DSimplexClassifier",
    "EquiangularBasisClassifier",
    "FixedClassifier",
    "HouseholderProjector",
    "OrthogonalLinear",
    "generate_equiangular_basis",
    "orthogonal_conv_regularizer",
]
