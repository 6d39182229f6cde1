"""Evaluation of pretrained models without fine-tuning (zero-shot minimal pairs)."""
