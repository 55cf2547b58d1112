"""Figures of a run directory and a multi-run report, read from files only.

``make_figures(run_dir)`` draws PNGs into ``RUN_DIR/figures`` (``varcon figures``);
``build_report(run_dirs, output_dir)`` writes ``report.md`` and a self-contained
``report.html`` (``varcon report``). matplotlib is needed for figures only
(``pip install "varcon[plots]"``); it is imported when a figure is drawn.
"""

from .figures import (
    FigureList,
    FigureRecord,
    PlotsNotInstalledError,
    make_cluster_figures,
    make_figures,
)
from .report import ReportResult, build_report, evaluation_command, group_runs, run_metrics
from .runs import IGNORED_CONFIG_KEYS, NotARunError, Run, load_run

__all__ = [
    "IGNORED_CONFIG_KEYS",
    "FigureList",
    "FigureRecord",
    "NotARunError",
    "PlotsNotInstalledError",
    "ReportResult",
    "Run",
    "build_report",
    "evaluation_command",
    "group_runs",
    "load_run",
    "make_cluster_figures",
    "make_figures",
    "run_metrics",
]
