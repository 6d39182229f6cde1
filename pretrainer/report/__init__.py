"""`pretrainer report DIR...`: one comparison of the runs under some directories.

Runs whose overrides differ only in seeds form a configuration; the report gives per
configuration the downstream test scores (mean ± std over seeds, pretrained and scratch),
the pretraining figures, bootstrap confidence intervals of the differences to a baseline
configuration and of pretrained minus scratch, and plots. See `write_report`.
"""

from pretrainer.report.build import ReportResult, markdown_report, select_baseline, write_report
from pretrainer.report.runs import Configuration, ReportError, Run, Scores
from pretrainer.report.stats import Comparison, Difference

__all__ = ["Comparison", "Configuration", "Difference", "ReportError", "ReportResult", "Run", "Scores",
           "markdown_report", "select_baseline", "write_report"]
