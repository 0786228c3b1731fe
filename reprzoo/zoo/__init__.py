"""The zoo: named models, hub backends, model cards and recipes."""
