"""Image and text: two towers and cross-modal objectives.

No method yet: each method becomes a file here, registered with ``@register_method``."""
