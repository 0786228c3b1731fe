"""Compatible representations and continual learners (the compatible-representations wing)."""
