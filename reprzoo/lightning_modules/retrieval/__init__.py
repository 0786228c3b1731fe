"""Retrievers: sparse, dense, multi-vector, quantised and generative (issue 16).

No method yet: each method becomes a file here, registered with ``@register_method``."""
