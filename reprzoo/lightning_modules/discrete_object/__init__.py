"""Discrete codes and slots: codebooks, object-centric representations.

No method yet: each method becomes a file here, registered with ``@register_method``."""
