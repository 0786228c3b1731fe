"""Metric learning and supervised representations (issue 18): methods trained with labels on one base
(:class:`~reprzoo.lightning_modules.metric_supervised.base.SupervisedModule`), each a file here registered with
``@register_method``: metric learning (Multi-Similarity, GPM, the hyperspherical classifier), robust supervision
(ELR, AdaMixUp, BatchFormer), semi-supervised (ShrinkMatch), label-guided cross-modal SupCon, CVIB (text), and the
baselines they are compared with (cross-entropy, SupCon, ArcFace, CosFace, MixUp, FixMatch)."""
