"""Evaluators score candidate configs; see :mod:`ghostnas.evaluators.base` for the interface."""

from ghostnas.evaluators.base import EvalResult, EvaluationFailed, Evaluator, ReportFn
from ghostnas.evaluators.fake import FakeEvaluator

__all__ = ["EvalResult", "EvaluationFailed", "Evaluator", "FakeEvaluator", "ReportFn"]
