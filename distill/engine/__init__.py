"""The training loop, checkpoints, metrics and run folders shared by every stage."""
