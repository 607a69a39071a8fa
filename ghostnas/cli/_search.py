"""``ghostnas search``: the main job, a budgeted architecture search with a Pareto front."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ghostnas.cli._format import positive_float
from ghostnas.cli._models import _positive

_EPILOG = """\
Budgets: 150MFLOPs, 0.15GFLOPs, 150MMACs and 150M all mean 150 million multiply-accumulates
(the GhostNet paper's "FLOPs" are MACs); 5Mparams limits parameters. MACs and params are counted
at 224x224 and 1000 classes (the paper convention) even though the proxy trains on small images.

Outputs in the run folder (--out): trials.csv, pareto.json, best.json (load it with
ghostnas.create_model), pareto.png, summary.md, run.json, and the study (study.db).
Running the same command again resumes the study and runs only the missing trials, also after a
crash (kill -9): the trials a dead process was running are marked failed and their configs rerun.
Several processes (on one machine or many) share one study with the same --storage and --study;
--trials is then the total for the study (README, "Reliability: resume and many workers").
"""


def _budget(text: str) -> Any:
    from ghostnas.budget import parse_budget
    from ghostnas.errors import GhostnasError

    try:
        return parse_budget(text)
    except GhostnasError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def register(sub: argparse._SubParsersAction) -> None:
    from ghostnas.evaluators import DEFAULT_EVALUATOR
    from ghostnas.search import DEFAULT_SPACE, DEFAULT_TRIALS, SAMPLERS

    p = sub.add_parser(
        "search",
        help="search the space under a cost budget; Pareto front, best config and plot in a folder",
        description="Multi-objective architecture search (maximise proxy accuracy, minimise MACs) "
        "under a cost budget. Over-budget candidates are rejected by the closed-form cost before "
        "any training.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--budget",
        type=_budget,
        default="150MFLOPs",
        help="cost limit: 150MFLOPs / 0.15GFLOPs / 150M (MACs at 224x224, paper convention) or "
        "5Mparams (default 150MFLOPs)",
    )
    p.add_argument(
        "--trials",
        type=_positive,
        default=DEFAULT_TRIALS,
        help=f"evaluated candidates wanted in the study; over-budget proposals do not count (default {DEFAULT_TRIALS})",
    )
    p.add_argument(
        "--timeout", type=positive_float, default=None, help="stop starting trials after this many seconds"
    )
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler (default tpe)")
    p.add_argument(
        "--space",
        default=DEFAULT_SPACE,
        help=f"search space name or .yaml path (default {DEFAULT_SPACE}; see `ghostnas space list`)",
    )
    p.add_argument(
        "--objectives",
        default="accuracy,macs",
        help="accuracy,macs (Pareto front, default), accuracy,params, accuracy,latency, or accuracy "
        "(single objective, with pruning)",
    )
    p.add_argument(
        "--evaluator",
        default=DEFAULT_EVALUATOR,
        help=f"how candidates are scored (default {DEFAULT_EVALUATOR})",
    )
    p.add_argument(
        "--epochs",
        type=positive_float,
        default=None,
        help="proxy training budget in epochs (training evaluators)",
    )
    p.add_argument(
        "--data", default="fashion-mnist", help="dataset the evaluator trains on (default fashion-mnist)"
    )
    p.add_argument("--data-dir", default=None, help="folder with the dataset files")
    p.add_argument("--seed", type=_int, default=0, help="seed for the sampler and the evaluator (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument(
        "--parallel",
        type=_positive,
        default=1,
        help="trials in flight in this process, trained together on the device (on CUDA one graph "
        "and stream each; README, 'Several candidates at once'); trial counts, resume and "
        "--storage workers are unchanged (default 1)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="run folder (default results/search-<space>-<budget>-<evaluator>-<sampler>-seed<seed>)",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL or journal:PATH (default: SQLite study.db in the run folder)",
    )
    p.add_argument("--study", default=None, help="study name (default: the run folder's name)")
    p.add_argument(
        "--latency-table",
        default=None,
        help="latency table for a latency budget (20ms) or objective (accuracy,latency); default: "
        "this CPU's table from `ghostnas latency build-table`",
    )
    p.add_argument(
        "--no-latency-calibration",
        action="store_true",
        help="use the latency table as it is, without re-timing GhostNet 0.5x/1.0x/1.3x first to "
        "rescale it to this session's machine speed",
    )
    p.add_argument(
        "--no-reference", action="store_true", help="do not evaluate the width-scaled GhostNet first"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log every trial")
    p.set_defaults(func=cmd_search)


class _TqdmHandler(logging.Handler):
    """Log lines that do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def cmd_search(args: argparse.Namespace) -> int:
    import optuna

    from ghostnas.search import NoResultError, Progress, SearchSettings, run_search

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("ghostnas search: %(message)s"))
    log = logging.getLogger("ghostnas")
    log.addHandler(handler)
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    bar = None

    def progress(p: Progress) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            from tqdm import tqdm

            # disable=None: no bar when stderr is not a terminal (logs, CI).
            bar = tqdm(
                total=p.target, desc="search", unit="trial", file=sys.stderr, dynamic_ncols=True, disable=None
            )
        bar.update(max(0, min(p.evaluated, p.target) - bar.n))
        best = "-" if p.best_accuracy is None else f"{p.best_accuracy:.4f}"
        bar.set_postfix_str(
            f"best {best} | pareto {p.pareto_size} | over budget {p.over_budget}/{p.proposals}"
        )

    settings = SearchSettings(
        budget=args.budget,
        space=args.space,
        trials=args.trials,
        timeout=args.timeout,
        sampler=args.sampler,
        objectives=args.objectives,
        evaluator=args.evaluator,
        epochs=args.epochs,
        data=args.data,
        data_dir=args.data_dir,
        seed=args.seed,
        device=args.device,
        out=args.out,
        storage=args.storage,
        study=args.study,
        reference=not args.no_reference,
        latency_table=args.latency_table,
        latency_calibration=not args.no_latency_calibration,
        command=["ghostnas", *args.argv],
        parallel=args.parallel,
    )
    try:
        result = run_search(settings, progress=progress)
    except NoResultError as exc:
        print(f"ghostnas search: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
        log.removeHandler(handler)
    best = result.best
    timing = result.run_info["timing"]
    print(f"run folder   {result.out_dir}")
    print(f"study        {result.study_name} in {result.storage_url}")
    print(f"evaluated    {result.evaluated} candidates ({result.evaluated_this_run} this run)")
    if best is not None:
        print(
            f"best         trial {best['number']}: accuracy {best['accuracy']:.4f}, "
            f"{best['macs'] / 1e6:.1f}M MACs, {best['params'] / 1e6:.2f}M params -> best.json"
        )
    print(f"pareto       {len(result.pareto)} configs -> pareto.json, pareto.png")
    share = timing.get("optuna_share")
    if timing["proposals_this_run"]:
        print(
            f"time         {timing['loop_seconds']:.1f} s, of which Optuna {timing['optuna_seconds']:.2f} s"
            + (f" ({100 * share:.1f}%)" if share is not None else "")
        )
    return 0
