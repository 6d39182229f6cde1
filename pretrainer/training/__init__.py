"""Pretraining loop, optimizer and schedule, checkpoints, device placement."""
