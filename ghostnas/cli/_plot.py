"""``ghostnas plot``: draw a finished search's figures again from its run folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="draw a run's Pareto front, hypervolume history (and latency plot) as PNG",
        description="Write pareto.png (the score against the budget's metric: all trials, the front labelled by "
        "trial, the budget, the GhostNet reference networks), hypervolume.png (how the front "
        "improved over trials) and, when the search predicted latency, latency.png into RUN_DIR.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the folder a `ghostnas search` wrote")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from ghostnas.plots import plot_run

    for path in plot_run(args.run_dir):
        print(f"wrote {path}")
    return 0
