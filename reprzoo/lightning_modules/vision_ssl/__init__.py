"""Self-supervised image methods (the vision-ssl wing)."""
