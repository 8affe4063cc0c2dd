"""Frozen-feature evaluation: kNN, linear probe (softmax regression), calibration metrics."""

from .calibration import expected_calibration_error, per_class_accuracy, top1
from .knn import knn_accuracy, knn_predict
from .softmax_regression import softmax_regression

__all__ = [
    "expected_calibration_error",
    "knn_accuracy",
    "knn_predict",
    "per_class_accuracy",
    "softmax_regression",
    "top1",
]
