"""Graphs and recommendation: node tables, link prediction, next-item models.

No method yet: each method becomes a file here, registered with ``@register_method``."""
