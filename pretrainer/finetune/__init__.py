"""Fine-tuning: task sources, the classifier on a body, the recipe, metrics."""
