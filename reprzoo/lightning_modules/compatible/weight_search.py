"""Neural Weight Search: "Neural Weight Search for Scalable Task Incremental Learning" (Jiang & Celiktutan, WACV 2023,
arXiv:2211.13823)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprzoo.lightning_modules.base import EmbeddingModule, TrainingOutput
from reprzoo.lightning_modules.compatible.base import CompatibleModule
from reprzoo.lightning_modules.registry import register_method
from reprzoo.losses.continual import nearest_pool_items
from reprzoo.losses.pseudo_labels import kmeans


class PooledConv2d(nn.Module):
    """A convolution whose every ``k x k`` kernel is an item of a frozen layer-wise pool.

    Latent weights are trained; the forward pass replaces each latent kernel by its nearest pool item (L2) and
    passes the gradient straight through to the latent kernel, so the search is end to end. After training, the
    layer of a task is stored as ``indices`` into the pool (``(out, in)`` integers).
    """

    def __init__(self, conv: nn.Conv2d, pool: torch.Tensor):
        super().__init__()
        k = conv.kernel_size[0] * conv.kernel_size[1]
        if pool.ndim != 2 or pool.shape[1] != k:
            raise ValueError(f"the pool of a {conv.kernel_size} convolution must be (items, {k}), got {tuple(pool.shape)}")
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.latent = nn.Parameter(conv.weight.detach().clone())
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
        self.register_buffer("pool", pool.detach().clone())

    def indices(self) -> torch.Tensor:
        """The searched pool item of every kernel, ``(out, in)``."""
        out_ch, in_ch = self.latent.shape[:2]
        return nearest_pool_items(self.latent.detach().reshape(out_ch * in_ch, -1), self.pool).view(out_ch, in_ch)

    @property
    def weight(self) -> torch.Tensor:
        searched = self.pool[self.indices()].view_as(self.latent)
        # straight-through: the forward value is exactly the pool items, the gradient goes to the latent kernels
        return searched + (self.latent - self.latent.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def build_pools(backbone: nn.Module, pool_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Layer-wise pools: the kernels of every convolution of ``backbone`` clustered (k-means) into ``pool_size`` items
    (fewer when the layer has fewer kernels)."""
    pools = {}
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Conv2d):
            kernels = module.weight.detach().reshape(-1, module.kernel_size[0] * module.kernel_size[1])
            pools[name] = kmeans(kernels, min(pool_size, len(kernels)), seed=seed)[0]
    return pools


def pool_backbone(backbone: nn.Module, pools: dict[str, torch.Tensor]) -> None:
    """Replace (in place) every convolution named in ``pools`` by a :class:`PooledConv2d` searching its pool."""
    for name, pool in pools.items():
        parent_name, _, child = name.rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        conv = getattr(parent, child)
        if isinstance(conv, nn.Conv2d):
            setattr(parent, child, PooledConv2d(conv, pool))


@register_method(
    title="Neural Weight Search for Scalable Task Incremental Learning",
    wing="compatible-representations",
    arxiv="2211.13823",
)
class NWS(CompatibleModule):
    """Neural Weight Search for task-incremental learning: a fixed search space of frozen kernels, one pool per
    layer, from which the network of every new task is composed, so that a task costs only the indices of its
    kernels (plus its batch-norm parameters and head) and memory grows in a controlled way.

    The first task trains an ordinary network; its kernels, clustered by k-means per layer, become the frozen pools
    (``pool_size`` items each). Each later task starts from the previous task's network with every convolution a
    :class:`PooledConv2d`: latent kernels trained by gradient descent, each replaced in the forward pass by its nearest
    pool item (straight-through), so the search is end to end and the task's layer is saved as pool indices. Tasks
    are told apart at test time (task-incremental): the loss and ``classify`` cover the current task's classes.

    The abstract fixes the idea (frozen layer-wise pools, searched end to end, models stored as indices); the search
    rule (nearest item with a straight-through gradient), k-means pools from the first task and the pool size are
    our reading at small scale. Optimiser settings are ours (SGD lr 0.1, weight decay 5e-4, cosine).

    Args:
        pool_size: items per layer-wise pool.
        pooled: the backbone already searches pools (set when an old model is given; saved so a checkpoint rebuilds).
        init_from_old: start each task's latent kernels and batch norms from the previous task's network.
        kwargs: options of :class:`CompatibleModule` (``old_model``) and :class:`EmbeddingModule`.
    """

    def __init__(
        self,
        pool_size: int = 256,
        pooled: bool = False,
        init_from_old: bool = True,
        lr: float = 0.1,
        weight_decay: float = 5e-4,
        **kwargs,
    ):
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        super().__init__(init_from_old=init_from_old, lr=lr, weight_decay=weight_decay, **kwargs)
        if pooled and not self.is_pooled:  # rebuilt from a checkpoint: empty pools of the saved shapes, then loaded
            pool_backbone(
                self.backbone,
                {
                    name: torch.zeros(min(pool_size, m.weight.shape[0] * m.weight.shape[1]), m.kernel_size[0] * m.kernel_size[1])
                    for name, m in self.backbone.named_modules()
                    if isinstance(m, nn.Conv2d)
                },
            )

    @property
    def is_pooled(self) -> bool:
        return any(isinstance(m, PooledConv2d) for m in self.backbone.modules())

    def on_old_model_set(self, old: EmbeddingModule) -> None:
        device = self.num_seen_classes.device
        old_pooled = {n: m.pool for n, m in old.backbone.named_modules() if isinstance(m, PooledConv2d)}
        pools = old_pooled or build_pools(old.backbone, self.hparams.pool_size)
        if self.hparams.init_from_old:
            state = {k.replace(".latent", ".weight"): v for k, v in old.backbone.state_dict().items() if not k.endswith(".pool")}
            target = self.backbone
            if self.is_pooled:  # reload the plain weights into a plain copy first
                raise RuntimeError("set the old model on a fresh NWS, not on one that already searches pools")
            target.load_state_dict(state)
            old_classifier = getattr(old, "classifier", None)
            if old_classifier is not None:
                self.classifier.load_state_dict(old_classifier.state_dict())
        pool_backbone(self.backbone, pools)
        self.hparams.pooled = True
        self.to(device)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits over the current task's classes (task-incremental: the task is known)."""
        return self.classifier(features)[:, self.num_old_classes : int(self.num_seen_classes)]

    def training_loss(self, views: list[torch.Tensor], labels: torch.Tensor | None = None, indices=None) -> TrainingOutput:
        if labels is None:
            raise ValueError("NWS is supervised: it needs the batch's labels")
        x = views[0] if isinstance(views, (list, tuple)) else views
        features = self.backbone(x)
        task_labels = labels - self.num_old_classes
        task_labels = torch.where(task_labels >= 0, task_labels, torch.full_like(task_labels, -1))  # replayed: ignored
        loss = F.cross_entropy(self.classify(features), task_labels, ignore_index=-1)
        return TrainingOutput(loss, features=features)
