"""Reusable building blocks shared by methods: heads, memory banks, EMA targets, feature maps, training-set loaders."""
