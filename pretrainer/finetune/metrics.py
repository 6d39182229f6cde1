"""Classification metrics, computed by scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy always; macro-F1 as well when there are more than two classes."""
    metrics = {"accuracy": float(accuracy_score(labels, predictions))}
    if num_labels > 2:
        metrics["macro_f1"] = float(f1_score(labels, predictions, average="macro", labels=list(range(num_labels)),
                                             zero_division=0))
    return metrics


PRIMARY_METRIC = "accuracy"  # the dev metric that picks the best epoch
