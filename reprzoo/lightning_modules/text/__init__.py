"""Text methods: word and sentence embeddings (the text wing, issue 15), each a file here registered with
``@register_method``, on the shared text base (:mod:`reprzoo.lightning_modules.text.base`)."""
