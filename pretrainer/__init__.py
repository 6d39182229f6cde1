"""pretrainer: compare pretraining choices (tokenizer, architecture, objective) under one budget."""

__version__ = "0.1.0"
