"""Losses: pure functions of tensors, one per paper objective; no Lightning here."""

from reprzoo.losses.adaptive_tokens import (
    budget_reconstruction_loss,
    discretize_loss,
    halting_loss,
    nugget_attention_bias,
    select_nuggets,
)
from reprzoo.losses.amcl import amcl_barlow_twins, amcl_info_nce, amcl_nt_xent
from reprzoo.losses.beclr import alignment_loss, balanced_assignments, beclr_loss, opta, uniformity_loss
from reprzoo.losses.compatible import (
    cosine_distillation,
    dsimplex_vertices,
    equiangular_basis_penalty,
    higher_order_compatibility_loss,
    orthogonal_conv_penalty,
    prototype_alignment_loss,
    prototype_influence_loss,
    relative_projection,
)
from reprzoo.losses.contrastive import info_nce, nt_xent, supervised_contrastive
from reprzoo.losses.dbpm import find_bad_pairs, gaussian_weights, historical_loss, nt_xent_per_sample
from reprzoo.losses.diffusion import alphas_cumprod, ddpm_loss, linear_beta_schedule, q_sample
from reprzoo.losses.dino import dino_loss, update_center
from reprzoo.losses.directpred import directpred_weight, feature_correlation, update_correlation
from reprzoo.losses.distillation import contrastive_distillation
from reprzoo.losses.equivariant import sie_loss
from reprzoo.losses.hydra import class_pair_contrastive_loss, gate_entropy, gated_cosine
from reprzoo.losses.interclr import inter_image_info_nce, sample_inter_image_pairs
from reprzoo.losses.jepa import gaussian_kl, group_lasso, jepa_loss, oi_vae_loss
from reprzoo.losses.matryoshka import doubling_dims, embedding_kl, matryoshka_loss, nested_logits, two_d_matryoshka_loss
from reprzoo.losses.mcr2 import (
    coding_rate,
    compression_rate,
    doubly_stochastic_membership,
    mlc_loss,
    rate_reduction,
    total_coding_rate_loss,
)
from reprzoo.losses.mim import a_mim_loss, cmim_contrastive_loss, gaussian_log_prob
from reprzoo.losses.obow import bow_from_distances, bow_logits, bow_prediction_loss, squared_distances
from reprzoo.losses.permutation import permutation_loss, permutation_matrix
from reprzoo.losses.prototypes import (
    closeness_cost,
    cluster_cost,
    discrimination_cost,
    last_layer_l1,
    orthogonality_cost,
    prototype_similarity_maps,
    separation_cost,
)
from reprzoo.losses.pseudo_labels import cluster_means, guided_nt_xent, kmeans, reassign_small_clusters
from reprzoo.losses.redundancy import barlow_twins_loss, covariance_loss, cross_correlation, variance_loss, vicreg_loss
from reprzoo.losses.siamese import byol_loss, byol_regression_loss, negative_cosine_similarity, simsiam_loss
from reprzoo.losses.sinkhorn import sinkhorn
from reprzoo.losses.stdim import spatial_info_nce, stdim_loss

__all__ = [
    "budget_reconstruction_loss",
    "discretize_loss",
    "halting_loss",
    "nugget_attention_bias",
    "select_nuggets",
    "cosine_distillation",
    "dsimplex_vertices",
    "equiangular_basis_penalty",
    "higher_order_compatibility_loss",
    "orthogonal_conv_penalty",
    "prototype_alignment_loss",
    "prototype_influence_loss",
    "relative_projection",
    "doubling_dims",
    "embedding_kl",
    "matryoshka_loss",
    "nested_logits",
    "two_d_matryoshka_loss",
    "gaussian_kl",
    "group_lasso",
    "jepa_loss",
    "oi_vae_loss",
    "gated_cosine",
    "gate_entropy",
    "class_pair_contrastive_loss",
    "separation_cost",
    "prototype_similarity_maps",
    "orthogonality_cost",
    "last_layer_l1",
    "discrimination_cost",
    "cluster_cost",
    "closeness_cost",
    "gaussian_log_prob",
    "cmim_contrastive_loss",
    "a_mim_loss",
    "sample_inter_image_pairs",
    "inter_image_info_nce",
    "q_sample",
    "linear_beta_schedule",
    "ddpm_loss",
    "alphas_cumprod",
    "cluster_means",
    "guided_nt_xent",
    "kmeans",
    "reassign_small_clusters",
    "alignment_loss",
    "balanced_assignments",
    "beclr_loss",
    "opta",
    "uniformity_loss",
    "permutation_loss",
    "permutation_matrix",
    "coding_rate",
    "compression_rate",
    "doubly_stochastic_membership",
    "mlc_loss",
    "rate_reduction",
    "total_coding_rate_loss",
    "find_bad_pairs",
    "gaussian_weights",
    "historical_loss",
    "nt_xent_per_sample",
    "spatial_info_nce",
    "stdim_loss",
    "barlow_twins_loss",
    "covariance_loss",
    "cross_correlation",
    "variance_loss",
    "vicreg_loss",
    "sie_loss",
    "amcl_barlow_twins",
    "amcl_info_nce",
    "amcl_nt_xent",
    "bow_from_distances",
    "bow_logits",
    "bow_prediction_loss",
    "byol_loss",
    "byol_regression_loss",
    "contrastive_distillation",
    "dino_loss",
    "directpred_weight",
    "feature_correlation",
    "info_nce",
    "negative_cosine_similarity",
    "nt_xent",
    "simsiam_loss",
    "sinkhorn",
    "squared_distances",
    "supervised_contrastive",
    "update_center",
    "update_correlation",
]
