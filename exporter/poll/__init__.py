"""Stage 5, polling: one target's poll step and its bookkeeping, the connect probe, credential
rotation and the scheduler that runs them all."""
