"""Metric learning and supervised representations (issue 18).

No method yet: each method becomes a file here, registered with ``@register_method``."""
