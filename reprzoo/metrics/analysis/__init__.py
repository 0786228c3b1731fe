"""Representation analysis: the catalogue's METRIC rows as functions over tensors (each docstring gives the paper's
definition), grouped as

- :mod:`~reprzoo.metrics.analysis.alignment`: two representations of the same inputs (convergent learning, RSA and
  topological RSA, linear CKA, Ollivier-Ricci curvature alignment, the contrastive linear probe);
- :mod:`~reprzoo.metrics.analysis.geometry`: one representation (IsoScore, neural collapse, convexity of class
  regions, position/context decomposition, prompt entropy and curvature);
- :mod:`~reprzoo.metrics.analysis.probes`: probes on frozen features (naive Bayes against logistic regression,
  k-sparse probing, the Rashomon ratio, the off-the-shelf SVM and retrieval protocol, the feature-norm probe);
- :mod:`~reprzoo.metrics.analysis.structure`: discrete tokens, slots and factors (visual-token statistics, slot
  DCI, ideal words);
- :mod:`~reprzoo.metrics.analysis.models`: analyses that run the model (inversion, the class-embedding lens,
  iterative feature merging, Net2Vec).

:class:`~reprzoo.metrics.analysis.evaluator.AnalysisEvaluator` logs any of them during training;
``reprzoo analyze`` (:mod:`reprzoo.analysis`) runs them on zoo models and writes a report.
"""

from reprzoo.metrics.analysis.alignment import (
    contrastive_probe,
    convergent_learning,
    linear_cka,
    ollivier_ricci_curvature,
    pairwise_alignment_matrix,
    rdm,
    ricci_alignment,
    rsa,
    sparse_prediction,
)
from reprzoo.metrics.analysis.evaluator import AnalysisEvaluator
from reprzoo.metrics.analysis.geometry import (
    euclidean_convexity,
    graph_convexity,
    infonce_invariance,
    isoscore,
    neural_collapse,
    position_context_decomposition,
    prompt_curvature,
    prompt_entropy,
)
from reprzoo.metrics.analysis.models import class_embedding_lens, invert_representation, layer_redundancy, net2vec
from reprzoo.metrics.analysis.probes import (
    feature_norm_probe,
    instance_retrieval_map,
    naive_bayes_vs_logistic,
    off_the_shelf_svm,
    rashomon_ratio,
    sparse_probe,
)
from reprzoo.metrics.analysis.structure import ideal_words, slot_dci, visual_token_statistics

__all__ = [
    "AnalysisEvaluator",
    "class_embedding_lens",
    "contrastive_probe",
    "convergent_learning",
    "euclidean_convexity",
    "feature_norm_probe",
    "graph_convexity",
    "ideal_words",
    "infonce_invariance",
    "instance_retrieval_map",
    "invert_representation",
    "isoscore",
    "layer_redundancy",
    "linear_cka",
    "naive_bayes_vs_logistic",
    "net2vec",
    "neural_collapse",
    "off_the_shelf_svm",
    "ollivier_ricci_curvature",
    "pairwise_alignment_matrix",
    "position_context_decomposition",
    "prompt_curvature",
    "prompt_entropy",
    "rashomon_ratio",
    "rdm",
    "ricci_alignment",
    "rsa",
    "slot_dci",
    "sparse_prediction",
    "sparse_probe",
    "visual_token_statistics",
]
