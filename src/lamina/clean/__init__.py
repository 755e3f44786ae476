"""Find and fix data errors: out-of-fold predictions, confident learning, duplicates, broken files; a review
page or widget; apply and undo on disk. Works over any application's DataLoaders with a target."""

from lamina.clean.apply import ApplyError, Decision, Journal, apply_decisions, read_decisions, undo
from lamina.clean.confident import LabelIssues, confident_joint, find_label_issues
from lamina.clean.issues import CHECKS, ISSUE_TYPES, Issues, find_issues
from lamina.clean.oof import Predictions, learner_predictions, out_of_fold
from lamina.clean.review import write_review
from lamina.clean.source import DatasetSource
from lamina.clean.widget import ReviewWidget

__all__ = [
    "CHECKS",
    "ISSUE_TYPES",
    "ApplyError",
    "DatasetSource",
    "Decision",
    "Issues",
    "Journal",
    "LabelIssues",
    "Predictions",
    "ReviewWidget",
    "apply_decisions",
    "confident_joint",
    "find_issues",
    "find_label_issues",
    "learner_predictions",
    "out_of_fold",
    "read_decisions",
    "undo",
    "write_review",
]
