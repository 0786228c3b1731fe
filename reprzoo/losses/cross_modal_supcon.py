"""The label-guided cross-modal supervised contrastive loss of "A Framework For Image Synthesis Using Supervised
Contrastive Learning" (Liu, Zhang, Zhang, Li & Pan, 2024, arXiv:2412.03957).

Image and caption embeddings of a batch share one space; every item that carries the anchor's class label is a
positive, in the anchor's modality (inner-modal: images of the same class) and in the other (inter-modal: its own
caption and the captions of the class), and every other item of either modality is a negative. With the items of
both modalities as one set of ``n + m`` vectors this is SupCon's L^sup_out (Khosla et al., 2020, arXiv:2004.11362)
over the concatenation ``[images; captions]`` with the labels repeated, which is how it is computed here.
"""

from __future__ import annotations

import torch

from reprzoo.losses.contrastive import supervised_contrastive


def label_guided_supcon(
    image: torch.Tensor,
    text: torch.Tensor,
    labels: torch.Tensor,
    text_labels: torch.Tensor | None = None,
    temperature: float = 0.1,
    normalize: bool = True,
) -> torch.Tensor:
    """Label-guided supervised contrastive loss over image and caption embeddings.

    For each anchor ``i`` of the ``n + m`` items, with ``P(i)`` the other items of its label (either modality) and
    ``A(i)`` all other items: ``-1/|P(i)| sum_{p in P(i)} log exp(z_i.z_p/T) / sum_{a in A(i)} exp(z_i.z_a/T)``,
    averaged over the anchors that have a positive. Label -1 (unlabelled) is never a positive nor an anchor, but
    stays a negative. Keys are gathered across ranks with gradients.

    Args:
        image: ``(n, d)`` image embeddings (several views of an image are several rows with the same label).
        text: ``(m, d)`` caption embeddings, in the same space.
        labels: ``(n,)`` class labels of the images.
        text_labels: ``(m,)`` class labels of the captions; ``None`` when ``text`` are the images' own captions in
            order (``m == n``).
        temperature: the softmax temperature T.
        normalize: L2-normalise the embeddings first (cosine similarities).

    Returns:
        The scalar loss (0, with gradients, when no anchor has a positive).
    """
    if image.ndim != 2 or text.ndim != 2:
        raise ValueError(f"image and text must be (batch, dim), got {tuple(image.shape)} and {tuple(text.shape)}")
    if image.shape[1] != text.shape[1]:
        raise ValueError(f"image and text embeddings must share a space, got widths {image.shape[1]} and {text.shape[1]}")
    if text_labels is None:
        if text.shape[0] != image.shape[0]:
            raise ValueError(f"{image.shape[0]} images but {text.shape[0]} captions: pass text_labels")
        text_labels = labels
    if labels.shape != (image.shape[0],) or text_labels.shape != (text.shape[0],):
        raise ValueError(
            f"one label per item: {tuple(labels.shape)} labels for {image.shape[0]} images, "
            f"{tuple(text_labels.shape)} for {text.shape[0]} captions"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return supervised_contrastive(torch.cat([image, text]), torch.cat([labels, text_labels]), temperature, normalize)


__all__ = ["label_guided_supcon"]
