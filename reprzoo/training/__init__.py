"""Training infrastructure: callbacks, atomic checkpointing and resume, optimisers and schedules."""
