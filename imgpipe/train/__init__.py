"""Training (the train stage): data, the loop, checkpoints and DVCLive logging."""
