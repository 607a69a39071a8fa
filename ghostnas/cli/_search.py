"""``ghostnas search``: the main job, a budgeted architecture search with a Pareto front."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from typing import Any

from ghostnas.cli._format import any_int, non_negative_float, positive_float, positive_int
from ghostnas.device import DEVICES_HELP

_EPILOG = """\
Budgets: 150MFLOPs, 0.15GFLOPs, 150MMACs and 150M all mean 150 million multiply-accumulates
(the GhostNet paper's "FLOPs" are MACs); 5Mparams limits parameters. MACs and params are counted
at 224x224 and 1000 classes (the paper convention) even though the proxy trains on small images;
--cost-at data counts them, and the budget, at the data's own size, channels and classes instead.

Your own data: --data PATH takes an image folder (PATH/<class>/*.png|jpg|jpeg|webp|bmp, or
PATH/train/<class>/... with optional PATH/val/ and PATH/test/) or an .npz file (x: N x H x W [x C]
uint8, y: labels; optional x_val/y_val, x_test/y_test). Images are decoded once into a cache in
$GHOSTNAS_HOME/cache/data (default ~/.ghostnas/cache/data; `ghostnas data clear-cache` clears it).

Outputs in the run folder (--out, default ./ghostnas-runs/...): trials.csv, pareto.json, best.json
(load it with ghostnas.create_model), pareto.png, hypervolume.png, summary.md, run.json, and the
study (study.db). Progress goes to stderr: a bar on a terminal, one line per trial otherwise.
Running the same command again resumes the study and runs only the missing trials, also after a
crash (kill -9): the trials a dead process was running are marked failed and their configs rerun.
Several processes (on one machine or many) share one study with the same --storage and --study;
--trials is then the total for the study (README, "Reliability: resume and many workers").

Detectors: --task detect --base yolov8n --budget 6.5GFLOPs --data DIR/data.yaml searches the
backbone C2f layers inside YOLOv8 (bottleneck kind, depth, width; space search_spaces/detect/), scored
by a short Ultralytics training run (val mAP50-95; --epochs, --image-size is its training side).
Budgets and costs are Ultralytics' GFLOPs: 2 x conv MACs at 640x640 with the data's classes (the
fused model's count). `ghostnas data make-detect` makes detection data offline; `ghostnas export
RUN --best --name NAME --yolo-yaml FILE` writes the winner as an Ultralytics model YAML.
"""


def _budget(text: str) -> Any:
    from ghostnas.budget import parse_budget
    from ghostnas.errors import GhostnasError

    try:
        return parse_budget(text)
    except GhostnasError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    from ghostnas.evaluators import DEFAULT_EVALUATOR
    from ghostnas.noise import DEFAULT_NOISE_SEEDS
    from ghostnas.search import DEFAULT_SPACE, DEFAULT_TRIALS, SAMPLERS
    from ghostnas.storage import DEFAULT_RETRY_S

    p = sub.add_parser(
        "search",
        help="search the space under a cost budget; Pareto front, best config and plot in a folder",
        description="Multi-objective architecture search (maximise the evaluator's score, minimise the "
        "budget's metric) "
        "under a cost budget. Over-budget candidates are rejected by the closed-form cost before "
        "any training.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--budget",
        type=_budget,
        default=None,
        help="cost limit: 150MFLOPs / 0.15GFLOPs / 150M (MACs at 224x224, paper convention) or "
        "5Mparams (default 150MFLOPs); with --task detect, Ultralytics GFLOPs (default 6.5GFLOPs)",
    )
    p.add_argument(
        "--task",
        choices=("classify", "detect"),
        default="classify",
        help="classify: GhostNet classifiers (default); detect: Ghost backbones inside a YOLO detector",
    )
    p.add_argument(
        "--base",
        default=None,
        help="--task detect: the base detector, yolov8n (default, the space's) ... yolov8x",
    )
    p.add_argument(
        "--trials",
        type=positive_int,
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
        default=None,
        help="accuracy,macs, accuracy,params or accuracy,latency (a Pareto front), or accuracy "
        "(single objective, with pruning); default: accuracy against the budget's metric "
        "(accuracy,macs for a FLOPs budget, accuracy,params for a params budget)",
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
        "--data",
        default="fashion-mnist",
        help="fashion-mnist (default), cifar10, synthetic, or your own image folder or .npz file",
    )
    p.add_argument("--data-dir", default=None, help="folder with a named dataset's files")
    p.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help="resize your images to NxN (default: their own size, if they all share one)",
    )
    p.add_argument(
        "--cost-at",
        choices=("paper", "data"),
        default="paper",
        help="where MACs, params and the budget are counted: paper (224x224, 1000 classes; default) "
        "or data (the data's size, channels and classes)",
    )
    p.add_argument(
        "--seed", type=any_int, default=0, help="seed for the sampler and the evaluator (default 0)"
    )
    p.add_argument("--device", default="auto", help=f"{DEVICES_HELP} (default auto)")
    p.add_argument(
        "--parallel",
        type=positive_int,
        default=1,
        help="trials in flight in this process, trained together on the device (on CUDA one graph "
        "and stream each; README, 'Several candidates at once'); trial counts, resume and "
        "--storage workers are unchanged (default 1)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="run folder (default ./ghostnas-runs/search-<space>-<budget>-<evaluator>-<sampler>-seed<seed>)",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL or journal:PATH (default: SQLite study.db in the run folder)",
    )
    p.add_argument("--study", default=None, help="study name (default: the run folder's name)")
    p.add_argument(
        "--storage-retry-s",
        type=non_negative_float,
        default=DEFAULT_RETRY_S,
        help="when a database server (--storage postgresql://...) stops answering mid-run, retry "
        "for this many seconds before stopping with a resumable error (default "
        f"{DEFAULT_RETRY_S:.0f})",
    )
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
        "--latency-backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="what a latency budget or objective is for: eager PyTorch or ONNX Runtime (its own "
        "table, `ghostnas latency build-table --backend onnxruntime`; default torch)",
    )
    p.add_argument(
        "--no-reference", action="store_true", help="do not evaluate the width-scaled GhostNet first"
    )
    p.add_argument(
        "--noise-seeds",
        type=any_int,
        default=DEFAULT_NOISE_SEEDS,
        help="score the reference with this many seeds in all (its own included) to measure the "
        f"proxy's seed-to-seed noise; 0 or 1 turns it off (default {DEFAULT_NOISE_SEEDS})",
    )
    p.add_argument(
        "--rungs",
        type=any_int,
        default=1,
        help="promotion rungs: candidates on or near the front train on to 3x, 9x... the epochs "
        "(multi-objective, training evaluators); 1 trains each candidate once (default 1)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (on a terminal) or per-trial lines (otherwise); the start line and the "
        "final summary stay",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="also log the search's details (study, resumes, workers)"
    )
    p.set_defaults(func=cmd_search)


def _cost(value: float, metric: str) -> str:
    if metric == "latency_ms":
        return f"{value:.3g} ms"
    if metric == "gflops":
        return f"{value:.3f} GFLOPs"
    return f"{value / 1e6:.1f}M {'MACs' if metric == 'macs' else 'params'}"


def _score(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def start_line(s: Any) -> str:
    """The one line a search prints before its first trial (a :class:`ghostnas.search.SearchStart`)."""
    names = {"macs": "MACs", "params": "params", "latency_ms": "latency", "gflops": "GFLOPs"}
    goal = (
        f"{s.score_label} against {names.get(s.objectives[1], s.objectives[1])}"
        if len(s.objectives) > 1
        else f"{s.score_label} only"
    )
    todo = max(s.trials - s.evaluated_before, 0)
    return (
        f"ghostnas search: space {s.space} under {s.budget.describe()} ({s.budget.convention()}); "
        f"{goal}; evaluator {s.evaluator} on {s.data}, device {s.device}, sampler {s.sampler}; "
        f"{s.trials} evaluated trials wanted, {s.evaluated_before} done, {todo} to run; "
        f"run folder {s.out_dir}; Ctrl-C stops, the same command resumes"
    )


def trial_line(p: Any, label: str) -> str | None:
    """One plain line for a trial that reached the evaluator (None for rejected proposals)."""
    if p.trial is None or p.last_state in ("over_budget", "surplus"):
        return None
    cost = _cost(p.costs[p.cost_key], p.cost_key) if p.cost_key in p.costs else ""
    took = f", {p.seconds:.1f} s" if p.seconds is not None else ""
    if p.score is not None:
        what = f"trial {p.trial} ok: {label} {_score(p.score)} at {cost}{took}"
    else:
        what = f"trial {p.trial} {p.last_state} at {cost}{took} (reason in trials.csv)"
    best = "-" if p.best_accuracy is None else _score(p.best_accuracy)
    return f"{what}; best {best}, front {p.pareto_size}, over budget {p.over_budget}/{p.proposals} proposals"


def _thread_write_fault_hook(log: logging.Logger, previous: Any) -> Any:
    """A ``threading.excepthook`` that says a failed background write in one line.

    Optuna writes each running trial's heartbeat from a thread; on a full disk that thread dies,
    and Python would print its traceback in the middle of the run. The main thread meets the
    same fault at its next write and ends the run with the one-line message; this says it first,
    once: under load a second heartbeat thread can fail before the main thread gets there.
    """
    from ghostnas._fs import write_fault

    said = threading.Event()

    def hook(info: Any) -> None:
        fault = write_fault(info.exc_value) if info.exc_value is not None else None
        if fault is None:
            previous(info)
            return
        if said.is_set():
            return
        said.set()
        log.warning(
            "a background write to the study failed (%s); the search stops at its next write", fault.reason
        )

    return hook


def cmd_search(args: argparse.Namespace) -> int:
    import optuna

    from ghostnas.cli._progress import ProgressDisplay
    from ghostnas.search import NoResultError, Progress, SearchSettings, SearchStart, run_search

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    display: ProgressDisplay | None = None
    label = "score"

    class _Lines(logging.Handler):
        """Log records as lines: through the progress display once it exists."""

        def emit(self, record: logging.LogRecord) -> None:
            text = self.format(record)
            if display is not None:
                display.line(text)
            else:
                print(text, file=sys.stderr, flush=True)

    def on_start(start: SearchStart) -> None:
        nonlocal display, label
        label = start.score_label
        display = ProgressDisplay(
            total=start.trials,
            unit="trial",
            desc="search",
            initial=min(start.evaluated_before, start.trials),
            enabled=not args.no_progress,
        )
        display.line(start_line(start))

    def progress(p: Progress) -> None:
        if display is None:
            return
        best = "-" if p.best_accuracy is None else _score(p.best_accuracy)
        display.step(
            p.evaluated,
            status=f"best {best} | front {p.pareto_size} | over budget {p.over_budget}/{p.proposals}",
            line=trial_line(p, label),
        )

    budget = args.budget
    if budget is None:
        from ghostnas.budget import parse_budget

        budget = parse_budget("6.5GFLOPs" if args.task == "detect" else "150MFLOPs")
    if args.task == "detect":
        from ghostnas.detect.task import detect_budget

        budget = detect_budget(budget)  # the same number, in Ultralytics' GFLOPs
    settings = SearchSettings(
        budget=budget,
        task=args.task,
        base=args.base,
        space=args.space,
        trials=args.trials,
        timeout=args.timeout,
        sampler=args.sampler,
        objectives=args.objectives,
        evaluator=args.evaluator,
        epochs=args.epochs,
        data=args.data,
        data_dir=args.data_dir,
        image_size=args.image_size,
        cost_at=args.cost_at,
        seed=args.seed,
        device=args.device,
        out=args.out,
        storage=args.storage,
        storage_retry_s=args.storage_retry_s,
        study=args.study,
        reference=not args.no_reference,
        latency_table=args.latency_table,
        latency_calibration=not args.no_latency_calibration,
        latency_backend=args.latency_backend,
        noise_seeds=args.noise_seeds,
        rungs=args.rungs,
        command=["ghostnas", *args.argv],
        parallel=args.parallel,
    )
    # The handler goes on only now, inside the try whose finally takes it off: a bad setting above
    # must not leave it on the logger (a later search in the same process would say everything twice).
    handler = _Lines()
    handler.setFormatter(logging.Formatter("ghostnas search: %(message)s"))
    log = logging.getLogger("ghostnas")
    data_log = logging.getLogger("ghostnas.data")
    previous_hook = threading.excepthook
    try:
        log.addHandler(handler)
        log.setLevel(logging.INFO if args.verbose else logging.WARNING)
        data_log.setLevel(logging.INFO)  # decoding a large folder shows its progress
        threading.excepthook = _thread_write_fault_hook(log, previous_hook)
        result = run_search(settings, progress=progress, on_start=on_start)
    except NoResultError as exc:
        print(f"ghostnas search: {exc}", file=sys.stderr)
        return 1
    finally:
        threading.excepthook = previous_hook
        if display is not None:
            display.close()
        log.removeHandler(handler)
        data_log.setLevel(logging.NOTSET)
    _print_result(result)
    return 0


def _print_result(result: Any) -> None:
    """The final summary on stdout."""
    best = result.best
    info = result.run_info
    label = info["settings"].get("score_label", "score")
    timing, totals = info["timing"], info.get("totals") or {}
    print(f"run folder   {result.out_dir}")
    print(f"study        {result.study_name} in {result.storage_url}")
    print(f"evaluated    {result.evaluated} candidates ({result.evaluated_this_run} this run)")
    if best is not None:
        gflops = f"{best.gflops:.3f} GFLOPs, " if best.gflops is not None else ""
        print(
            f"best         trial {best.number}: {label} {_score(best.accuracy)}, {gflops}"
            f"{best.macs / 1e6:.1f}M MACs, {best.params / 1e6:.2f}M params -> best.json"
        )
    print(
        f"pareto       {len(result.pareto)} configs -> pareto.json, pareto.png, hypervolume.png, summary.md"
    )
    print(f"costs        {result.run_info['settings']['cost_convention']}")
    floor = result.run_info.get("noise") or {}
    if floor.get("measured"):
        print(f"noise        seed SD {floor['sd']:.4f} ({floor['dof']} dof); see summary.md")
    share = timing.get("optuna_share")
    if timing["proposals_this_run"]:
        print(
            f"time         {timing['loop_seconds']:.1f} s this run, of which Optuna {timing['optuna_seconds']:.2f} s"
            + (f" ({100 * share:.1f}%)" if share is not None else "")
        )
    if totals.get("runs", 0) > 1:
        print(
            f"study time   {totals['loop_seconds']:.1f} s in the search loop over {totals['runs']} runs "
            "of this command (run.json keeps each)"
        )
