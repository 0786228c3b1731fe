"""Text methods: word and sentence embeddings (the text wing, issue 15).

No method yet: each method becomes a file here, registered with ``@register_method``."""
