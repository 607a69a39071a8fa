"""Fidelity of every proxy: how well does each score rank architectures by trained accuracy?

Configs are sampled from the default search space (``ghostnet_v1``): ``--spread`` of them
stratified by MACs at 224x224 (log-uniform bins between ``--macs-lo`` and ``--macs-hi``) and
``--band`` more inside a narrow MACs band (``--band-lo``..``--band-hi``), where a search under a
budget actually has to choose. Every config is scored by every proxy:

- ``train``: validation accuracy after the short-training proxy (``--proxy-images`` images),
  ``train@1``: its accuracy after the first epoch (what a pruner sees),
- ``trainloss``: minus the mean training loss of the same run (sum-of-losses proxy),
- ``synflow``, ``naswot``, ``zen``: zero-cost proxies,
- ``params``, ``macs``: the baselines,

and then trained longer as the reference, with every seed of ``--ref-seeds``; the reference
accuracy is the mean over those seeds. The table gives Kendall's tau and Spearman's rho of each
proxy against the reference accuracy (and against each seed alone), over all configs and inside
the band, with seeds and timings. Validation images are a fixed split of the training set (never
the test set), the same for every config.

The reference has to agree with itself before any proxy can be judged against it: the table
first reports the seed-to-seed Kendall tau of the reference (with a bootstrap interval), the
ceiling of every proxy's figure. Presets (``--scale``):

- ``cpu`` (default): a *repeatable* reference sized for about 90 minutes on a shared 2-core CPU
  with one torch thread: 12 configs (7 over a MACs spread of 15M-200M, 5 in the band), two
  reference seeds, each training 3 epochs of 4,000 images with cosine decay, validated once at
  the end on 10,000 held-out training images; the proxy is the search's default ``train`` recipe.
- ``gpu``: the same design at GPU scale (16 configs over 15M-250M, 5 epochs of 20,000 images,
  10,000 validation images), sized for under 8 minutes of an H100/H200 (an estimate; see
  ``benchmarks/gpu_plan.md``, ``scripts/gpu_session.sh``).
- ``cpu-quick``: the older 20-minute reduced run (1,024 proxy images, a reference of 10x that
  over 2 linear-decay epochs, 1,000 validation images, one reference seed); it is what
  ``results/fidelity-cpu-2026-11-23`` ran (as ``--scale cpu`` then), and its reference agreed
  with itself across seeds at a Kendall tau of only 0.12-0.33.

Every preset value can be overridden by its flag; ``fidelity.json`` records them all.

Run:  .venv/bin/python benchmarks/fidelity.py --threads 1 --resume --out results/fidelity-cpu-DATE
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ghostnas.config import GhostNetConfig, config_from_dict, config_to_dict
from ghostnas.cost import count_cost
from ghostnas.data import Dataset, input_shape, load_dataset
from ghostnas.evaluators import EvaluationFailed
from ghostnas.evaluators.proxy import TrainEvaluator, proxy_data
from ghostnas.evaluators.zero_cost import CostEvaluator, NaswotEvaluator, SynflowEvaluator, ZenEvaluator
from ghostnas.registry import create_model
from ghostnas.space import load_space
from ghostnas.stats import bootstrap_interval, kendall_tau, spearman_rho
from ghostnas.train import Recipe, TrainingFailed, TrainingRun, prepare_data, run_to_end

try:  # benchmarks/ is on sys.path when run as a script
    from _runinfo import cpu_lock, run_info
except ImportError:  # pragma: no cover
    from benchmarks._runinfo import cpu_lock, run_info

log = logging.getLogger("fidelity")

PROXIES = ("train", "train@1", "trainloss", "synflow", "naswot", "zen", "params", "macs")


def sample_configs(
    space_name: str, seed: int, spread: int, lo: float, hi: float, band: int, band_lo: float, band_hi: float
) -> list[tuple[GhostNetConfig, str]]:
    """``spread`` configs in log-uniform MACs bins over [lo, hi] and ``band`` in [band_lo, band_hi]."""
    space = load_space(space_name)
    rng = random.Random(seed)
    edges = [lo * (hi / lo) ** (i / spread) for i in range(spread + 1)]
    bins: list[GhostNetConfig | None] = [None] * spread
    in_band: list[GhostNetConfig] = []
    seen: set[str] = set()
    for _ in range(200_000):
        if all(b is not None for b in bins) and len(in_band) >= band:
            break
        cfg = space.sample(rng)
        key = json.dumps(config_to_dict(cfg), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        macs = count_cost(cfg).macs
        if band_lo <= macs <= band_hi and len(in_band) < band:
            in_band.append(cfg)
            continue
        for i in range(spread):
            if bins[i] is None and edges[i] <= macs < edges[i + 1]:
                bins[i] = cfg
                break
    if any(b is None for b in bins) or len(in_band) < band:
        raise SystemExit("could not fill every MACs bin from the space; widen --macs-lo/--macs-hi")
    spread_cfgs = [c for c in bins if c is not None]
    # interleaved, so that a run stopped early (see --stop-after) still covers range and band
    out: list[tuple[GhostNetConfig, str]] = []
    for i in range(max(len(spread_cfgs), len(in_band))):
        out += [(c, "spread") for c in spread_cfgs[i : i + 1]] + [(c, "band") for c in in_band[i : i + 1]]
    return out


# Preset values of the flags left unset (see the module docstring). ``ref_images`` is the
# reference's training subset (each epoch passes over it); None means ``ref_factor`` times the
# proxy's images over ``ref_epochs`` (the cpu-quick design).
PRESETS: dict[str, dict[str, Any]] = {
    "cpu-quick": {
        "spread": 14,
        "band": 8,
        "macs_lo": 40e6,
        "macs_hi": 300e6,
        "proxy_images": 1024,
        "proxy_batch": 32,
        "proxy_val_images": None,  # = val_images
        "ref_images": None,
        "ref_epochs": 2,
        "ref_batch": 64,
        "ref_schedule": "linear",
        "ref_warmup": 0.15,
        "ref_validate": "epochs",
        "val_images": 1000,
        "n_ref_seeds": 1,
    },
    "cpu": {
        "spread": 7,
        "band": 5,
        "macs_lo": 15e6,
        "macs_hi": 200e6,
        "proxy_images": 6144,
        "proxy_batch": 128,
        "proxy_val_images": 2000,
        "ref_images": 4000,
        "ref_epochs": 3,
        "ref_batch": 128,
        "ref_schedule": "cosine",
        "ref_warmup": 0.05,
        "ref_validate": "end",
        "val_images": 10000,
        "n_ref_seeds": 2,
    },
    "gpu": {
        "spread": 10,
        "band": 6,
        "macs_lo": 15e6,
        "macs_hi": 250e6,
        "proxy_images": 6144,
        "proxy_batch": 128,
        "proxy_val_images": 2000,
        "ref_images": 20000,
        "ref_epochs": 5,
        "ref_batch": 128,
        "ref_schedule": "cosine",
        "ref_warmup": 0.05,
        "ref_validate": "end",
        "val_images": 10000,
        "n_ref_seeds": 2,
    },
}


def apply_preset(args: argparse.Namespace) -> None:
    """Fill every flag left unset from the ``--scale`` preset; ``--ref-seeds`` from ``--ref-seed``."""
    preset = dict(PRESETS[args.scale])
    n_seeds = preset.pop("n_ref_seeds")
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.proxy_val_images is None:
        args.proxy_val_images = args.val_images
    if not args.ref_seeds:
        args.ref_seeds = [args.ref_seed + i for i in range(n_seeds)]
    if len(set(args.ref_seeds)) != len(args.ref_seeds):
        raise SystemExit(f"fidelity: --ref-seeds {args.ref_seeds} repeats a seed; give distinct seeds")
    args.ref_seed = args.ref_seeds[0]


def recipes(args: argparse.Namespace) -> tuple[Recipe, Recipe]:
    """The proxy recipe and the reference recipe."""
    proxy = Recipe(
        val_images=args.proxy_val_images,
        train_images=args.proxy_images // args.proxy_epochs,
        epochs=float(args.proxy_epochs),
        batch_size=args.proxy_batch,
    )
    ref_subset = args.ref_images or args.proxy_images * args.ref_factor // args.ref_epochs
    ref = Recipe(
        val_images=args.val_images,
        train_images=ref_subset,
        epochs=float(args.ref_epochs),
        batch_size=args.ref_batch,
        schedule=args.ref_schedule,
        warmup=args.ref_warmup,
    )
    return proxy, ref


def train_reference(
    dataset: Dataset, cfg: GhostNetConfig, recipe: Recipe, device: str, seed: int, validate: str
) -> dict[str, Any]:
    """Train ``cfg`` as the reference with ``seed``; ``validate="end"`` scores it only once.

    Validating 10,000 images after every epoch would cost about a third of a CPU reference run
    and only the last accuracy is the reference, so the run's report points are cut to the last
    step. Everything else is :func:`ghostnas.train.fit`'s loop (same seeding, same batches).
    """
    train, val = proxy_data(dataset, recipe)
    data = prepare_data(train, val, recipe, device, dataset.mean, dataset.std)
    if validate == "end":
        data = replace(data, report_at=(data.total_steps,))
    spec = input_shape(dataset.spec)
    t0 = time.perf_counter()
    try:
        run = TrainingRun(lambda: create_model(cfg, spec=spec), data, seed, None)
        run_to_end(run)
    except TrainingFailed as exc:
        return {"failed": str(exc), "seconds": time.perf_counter() - t0}
    res = run.result(0.0, 0.0)
    return {
        "val_acc": res.val_acc,
        "val_loss": res.val_loss,
        "epoch_acc": list(res.epoch_acc),
        "train_loss_last": res.train_loss_last,
        "images": res.images,
        "eval_s": res.eval_s,
        "seconds": time.perf_counter() - t0,
    }


def score_config(
    cfg: GhostNetConfig, evs: dict[str, Any], dataset: Dataset, ref_recipe: Recipe, args: argparse.Namespace
) -> dict[str, Any]:
    row: dict[str, Any] = {"scores": {}, "seconds": {}, "failed": {}}
    t = time.perf_counter()
    try:
        res = evs["train"].evaluate(cfg)
        row["scores"]["train"] = res.score
        row["scores"]["train@1"] = float(res.metrics["val_acc_1"])
        row["scores"]["trainloss"] = -float(res.metrics["train_loss_mean"])
        row["proxy_metrics"] = dict(res.metrics)
    except EvaluationFailed as exc:
        for name in ("train", "train@1", "trainloss"):
            row["failed"][name] = str(exc)
    row["seconds"]["train"] = time.perf_counter() - t
    for name in ("synflow", "naswot", "zen", "params", "macs"):
        t = time.perf_counter()
        try:
            row["scores"][name] = evs[name].evaluate(cfg).score
        except EvaluationFailed as exc:
            row["failed"][name] = str(exc)
        row["seconds"][name] = time.perf_counter() - t
    t = time.perf_counter()
    by_seed = {
        seed: train_reference(dataset, cfg, ref_recipe, args.device, seed, args.ref_validate)
        for seed in args.ref_seeds
    }
    row["reference"] = by_seed[args.ref_seeds[0]]
    row["ref_seed"] = str(args.ref_seeds[0])
    if len(by_seed) > 1:
        row["extra_reference"] = {str(s): by_seed[s].get("val_acc") for s in args.ref_seeds[1:]}
        row["reference_runs"] = {str(s): r for s, r in by_seed.items()}
    row["seconds"]["reference"] = time.perf_counter() - t
    return row


def reference_acc(row: dict[str, Any]) -> float | None:
    """The reference accuracy of a row: the mean over every reference seed that finished."""
    values = [v for v in reference_seeds(row).values() if v is not None]
    return sum(values) / len(values) if values else None


def reference_seeds(row: dict[str, Any]) -> dict[str, float | None]:
    """Reference accuracy by seed: the main reference plus any added with ``--add-ref-seed``."""
    out = {str(row.get("ref_seed", "main")): row["reference"].get("val_acc")}
    out.update(row.get("extra_reference", {}))
    return out


def correlations(
    rows: list[dict[str, Any]], band_only: bool, seed: str | None = None
) -> dict[str, dict[str, float | int]]:
    """Kendall's tau and Spearman's rho of every proxy against the reference accuracy (the mean
    over seeds, or one ``seed``'s alone)."""

    def target(r: dict[str, Any]) -> float | None:
        return reference_acc(r) if seed is None else reference_seeds(r).get(seed)

    out: dict[str, dict[str, float | int]] = {}
    for name in PROXIES:
        pairs = [
            (r["scores"][name], target(r))
            for r in rows
            if (r["in_band"] or not band_only) and name in r["scores"] and target(r) is not None
        ]
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        enough = len(pairs) >= 2
        out[name] = {
            "n": len(pairs),
            "kendall_tau": kendall_tau(xs, ys) if enough else math.nan,
            "kendall_tau_ci90": list(bootstrap_interval(xs, ys)) if enough else [math.nan, math.nan],
            "spearman_rho": spearman_rho(xs, ys) if enough else math.nan,
        }
    return out


def run_note(args: dict[str, Any], seeds: str) -> str:
    """The paragraph under the table's title: what kind of run this was and how far to trust it."""
    scale = args["scale"]
    if args.get("ref_images"):  # the repeatable design (cpu and gpu presets of 2026-11-29 on)
        where = (
            "**This is a reduced-scale CPU run** (shared 2-core CPU, sized for about 90 minutes)"
            if scale != "gpu"
            else "GPU run"
        )
        return (
            f"{where}: the reference trains every config {args['ref_epochs']} epochs on the same "
            f"{args['ref_images']:,} training images with {args['ref_schedule']} decay and is validated on "
            f"{args['val_images']:,} held-out training images ({seeds}). That is near convergence on the "
            "subset, not training on all 55,000 images: the reference's own seed-to-seed tau below says "
            "how far it can be trusted, and no proxy's tau can be read above it."
        )
    if scale in ("cpu", "cpu-quick"):
        return (
            "**This is a reduced-scale CPU run** (2-core CPU, small proxy and reference budgets so that the "
            "whole benchmark fits in about 20 minutes). The reference is only 10x the proxy's images, far "
            f"from a full training run ({seeds}): read the correlations as a first measurement with wide "
            "error bars."
        )
    return (
        "GPU run: the proxy is the search's default `train` recipe; the reference trains each config on "
        f"10x its images ({seeds})."
    )


def repeatability(rows: list[dict[str, Any]], band_only: bool = False) -> dict[str, dict[str, Any]]:
    """Kendall tau (with its 90% bootstrap interval) between the reference accuracies of every
    pair of reference seeds, over all configs or inside the band only.

    This is the ceiling of the table: no proxy can be expected to rank the configs more like one
    reference run than another run of the same reference with another seed does.
    """
    seeds = sorted({k for r in rows for k, v in reference_seeds(r).items() if v is not None})
    out: dict[str, dict[str, Any]] = {}
    for i, a in enumerate(seeds):
        for b in seeds[i + 1 :]:
            pairs = [
                (reference_seeds(r)[a], reference_seeds(r)[b])
                for r in rows
                if (r["in_band"] or not band_only)
                and reference_seeds(r).get(a) is not None
                and reference_seeds(r).get(b) is not None
            ]
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            enough = len(pairs) >= 2
            out[f"{a} vs {b}"] = {
                "n": len(pairs),
                "kendall_tau": kendall_tau(xs, ys) if enough else math.nan,
                "kendall_tau_ci90": list(bootstrap_interval(xs, ys)) if enough else [math.nan, math.nan],
                "spearman_rho": spearman_rho(xs, ys) if enough else math.nan,
            }
    return out


TARGET_TAU = 0.7


def reference_noise(rows: list[dict[str, Any]], target_tau: float = TARGET_TAU) -> dict[str, Any]:
    """How noisy the reference is against how much the configs differ, and what would reach
    ``target_tau`` (an estimate, from the configs with two or more reference seeds).

    The seed noise SD is pooled from each config's seeds (sample variance per config, averaged);
    the configs' own spread is the variance of their seed means less the noise's share of it.
    If both are roughly normal and the noise is the same for every config, two independent
    references (each the mean of ``k`` seeds) correlate with Pearson ``r = v / (v + s**2 / k)``
    (``v`` the configs' variance, ``s`` the seed SD), and Kendall's tau of a bivariate normal is
    ``2 / pi * asin(r)``. Inverting that gives the seeds per config (or the smaller seed noise at
    one seed) that a tau of ``target_tau`` needs. These are model-based estimates, not
    measurements, and are labelled so wherever they are shown.
    """
    groups = [[v for v in reference_seeds(r).values() if v is not None] for r in rows]
    groups = [g for g in groups if len(g) >= 2]
    if len(groups) < 3:
        return {"n": len(groups)}
    within = [sum((x - sum(g) / len(g)) ** 2 for x in g) / (len(g) - 1) for g in groups]
    noise_var = sum(within) / len(within)
    k_used = min(len(g) for g in groups)
    means = [sum(g) / len(g) for g in groups]
    m = sum(means) / len(means)
    var_means = sum((x - m) ** 2 for x in means) / (len(means) - 1)
    true_var = max(var_means - noise_var / k_used, 0.0)
    r_needed = math.sin(math.pi * target_tau / 2)

    def tau_for(k: float) -> float:
        if true_var <= 0:
            return 0.0
        return 2 / math.pi * math.asin(true_var / (true_var + noise_var / k))

    seeds_needed = math.ceil(noise_var * r_needed / (true_var * (1 - r_needed))) if true_var > 0 else None
    return {
        "n": len(groups),
        "seed_sd": math.sqrt(noise_var),
        "config_sd": math.sqrt(true_var),
        "config_sd_of_means": math.sqrt(var_means),
        "mean_abs_seed_difference": sum(max(g) - min(g) for g in groups) / len(groups),
        "expected_tau_one_seed": tau_for(1),
        "expected_tau_mean_of_seeds": tau_for(k_used),
        "seeds_used": k_used,
        "target_tau": target_tau,
        "seeds_needed_for_target": seeds_needed,
        "seed_sd_needed_for_target_one_seed": math.sqrt(true_var * (1 - r_needed) / r_needed),
    }


def all_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every correlation of the table: against the mean reference, against each seed, and the
    reference's own repeatability, over all configs and inside the band."""
    seeds = sorted({k for r in rows for k, v in reference_seeds(r).items() if v is not None})
    return {
        "correlations": {"all": correlations(rows, False), "band": correlations(rows, True)},
        "correlations_by_seed": {
            s: {"all": correlations(rows, False, s), "band": correlations(rows, True, s)} for s in seeds
        },
        "repeatability": repeatability(rows),
        "repeatability_band": repeatability(rows, band_only=True),
        "reference_noise": reference_noise(rows),
        "reference_noise_band": reference_noise([r for r in rows if r["in_band"]]),
    }


def extra_seed_file(out: Path, seed: int) -> Path:
    return out / f"ref-seed-{seed}.json"


def add_reference_seed(args: argparse.Namespace, dataset: Any, ref_recipe: Recipe) -> None:
    """Train the reference of every scored config once more with seed ``--add-ref-seed``.

    Writes ``ref-seed-N.json`` (config key -> accuracy) after every config, so it resumes; the
    next ``--render-only`` folds it into the table (reference = mean over seeds, plus the
    seed-to-seed repeatability). Several seeds can run at once in separate processes.
    """
    seed = args.add_ref_seed
    rows = json.loads((args.out / "fidelity.json").read_text())["rows"]
    path = extra_seed_file(args.out, seed)
    done: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    run_path = args.out / f"ref-seed-{seed}.run.json"
    runs = json.loads(run_path.read_text()) if run_path.exists() else []
    run_path.write_text(json.dumps([*runs, run_info()], indent=1) + "\n")  # every process that added rows
    for i, row in enumerate(rows):
        key = json.dumps(row["config"], sort_keys=True)
        if key in done:
            continue
        got = train_reference(
            dataset, config_from_dict(row["config"]), ref_recipe, args.device, seed, args.ref_validate
        )
        done[key] = {k: got[k] for k in ("val_acc", "failed", "seconds") if k in got}
        log.info("reference seed %d: %d/%d %s", seed, i + 1, len(rows), done[key])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1) + "\n")
        tmp.replace(path)


def rerender(out: Path) -> dict[str, Any]:
    """Fold extra reference seeds into ``fidelity.json`` and recompute every correlation."""
    result = json.loads((out / "fidelity.json").read_text())
    main_seed = str(result["args"]["ref_seed"])
    extra_seeds = []
    for path in sorted(out.glob("ref-seed-*.json")):
        seed = path.stem.removeprefix("ref-seed-")
        if not seed.lstrip("-").isdigit():  # ref-seed-N.run.json: the provenance of that seed's rows
            continue
        extra_seeds.append(int(seed))
        by_key = json.loads(path.read_text())
        for row in result["rows"]:
            got = by_key.get(json.dumps(row["config"], sort_keys=True))
            if got is not None:
                row.setdefault("extra_reference", {})[seed] = got.get("val_acc")
    for row in result["rows"]:
        row["ref_seed"] = main_seed
    rows = result["rows"]
    counts: dict[int, int] = {}
    for row in rows:
        k = sum(v is not None for v in reference_seeds(row).values())
        counts[k] = counts.get(k, 0) + 1
    seeds = ", ".join(
        f"{n} configs with {k} reference seed{'s' * (k != 1)}"
        for k, n in sorted(counts.items(), reverse=True)
    )
    result["note"] = run_note(result["args"], seeds)
    inline = [int(v) for v in result["args"].get("ref_seeds") or [main_seed]]
    result["reference_seeds"] = inline + [v for v in extra_seeds if v not in inline]
    result.update(all_stats(rows))
    (out / "fidelity.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.3f}"


def reference_line(a: dict[str, Any], result: dict[str, Any]) -> str:
    """The table's line on the proxy and reference recipes (both designs: see ``PRESETS``)."""
    proxy = (
        f"- Proxy: {a['proxy_images']} training images ({a['proxy_epochs']} epochs of "
        f"{a['proxy_images'] // a['proxy_epochs']}, batch {a['proxy_batch']}"
    )
    if not a.get("ref_images"):
        return (
            proxy + f"); reference: {a['proxy_images'] * a['ref_factor']} "
            f"images ({a['ref_epochs']} epochs of {a['proxy_images'] * a['ref_factor'] // a['ref_epochs']}, batch {a['ref_batch']}), "
            f"peak learning rates {result['proxy_recipe']['lr']:g} and {result['reference_recipe']['lr']:g}, "
            f"i.e. {a['ref_factor']}x. Seeds: proxy and zero-cost {a['seed']}, reference "
        )
    r = result["reference_recipe"]
    return (
        proxy
        + f", validated on {a['proxy_val_images']:,} of the held-out images, linear decay: the search's "
        f"`train` proxy{'' if (a['proxy_images'], a['proxy_batch'], a['proxy_val_images']) == (6144, 128, 2000) else ' resized'}); "
        f"reference: {a['ref_epochs']} epochs of the same {a['ref_images']:,} images ({a['ref_epochs'] * a['ref_images']:,} in all), "
        f"batch {a['ref_batch']}, peak learning rate {r['lr']:g} with {r['warmup']:g} warm-up and {r['schedule']} decay, "
        f"validated {'once at the end' if a.get('ref_validate') == 'end' else 'after every epoch'}. "
        f"Seeds: proxy and zero-cost {a['seed']}, reference "
    )


def markdown(result: dict[str, Any]) -> str:
    a = result["args"]
    lines = [
        f"# Proxy fidelity ({result['scale']})",
        "",
        result["note"],
        "",
        f"- Space `{a['space']}`, {len(result['rows'])} configs (seed {a['seed']}): {a['spread']} stratified "
        f"log-uniformly by MACs@224 over {a['macs_lo'] / 1e6:.0f}M-{a['macs_hi'] / 1e6:.0f}M, {a['band']} more in the "
        f"band {a['band_lo'] / 1e6:.0f}M-{a['band_hi'] / 1e6:.0f}M ({result['n_in_band']} configs fall in the band in all).",
        f"- Data: {result['data']}; validation on {a['val_images']} fixed held-out training images (never the test set).",
        reference_line(a, result)
        + f"{', '.join(str(v) for v in result.get('reference_seeds', [a['ref_seed']]))}"
        + (
            " (reference accuracy = mean over these seeds)."
            if len(result.get("reference_seeds", [])) > 1
            else "."
        ),
        *([f"- Torch threads: {a['threads']} (set by --threads)."] if a.get("threads") else []),
        f"- Machine: {result['run']['cpu']} ({result['run']['cpu_count']} cores, {result['run']['torch_threads']} threads), "
        f"torch {result['run']['torch']}, device {a['device']}; commit {result['run']['git_commit'][:10]}.",
        (
            f"- {result['resumed_rows']} rows were scored by an earlier process of the same command (interrupted "
            "and resumed with --resume; same sampled configs, recipes and seeds)."
            if result["resumed_rows"]
            else "- Scored in one process."
        ),
        f"- Total wall time {result['total_s'] / 60:.1f} min (this process"
        + ("; the CPU was shared with other jobs, so timings are noisy)." if a["scale"] == "cpu" else ").")
        + (
            f" Stopped early by --stop-after: {len(result['rows'])} of {result['n_sampled']} sampled configs scored."
            if result["stopped_early"]
            else ""
        ),
        "",
        "Kendall tau with its 90% bootstrap interval over configs (1,000 resamples, seed 0) in brackets.",
        "",
        "| proxy | Kendall tau (all) | Spearman rho (all) | n | Kendall tau (band) | Spearman rho (band) | n band | mean s / config |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def tau(c: dict[str, Any]) -> str:
        ci = c.get("kendall_tau_ci90")
        return fmt(c["kendall_tau"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")

    for name in PROXIES:
        c, b = result["correlations"]["all"][name], result["correlations"]["band"][name]
        secs = result["mean_seconds"]["train" if name.startswith("train") else name]
        lines.append(
            f"| {name} | {tau(c)} | {fmt(c['spearman_rho'])} | {c['n']} | {tau(b)} | "
            f"{fmt(b['spearman_rho'])} | {b['n']} | {secs:.2f} |"
        )
    by_seed = result.get("correlations_by_seed") or {}
    if len(by_seed) > 1:
        seeds = list(by_seed)
        lines += [
            "",
            "Each proxy against each reference seed alone (Kendall tau [90% interval], all configs):",
            "",
            "| proxy | " + " | ".join(f"tau vs seed {s}" for s in seeds) + " |",
            "|---|" + "---:|" * len(seeds),
            *[
                f"| {name} | " + " | ".join(tau(by_seed[s]["all"][name]) for s in seeds) + " |"
                for name in PROXIES
            ],
        ]
    rep = result.get("repeatability") or {}
    rep_band = result.get("repeatability_band") or {}
    if rep:
        lines += [
            "",
            "Noise in the reference itself: how well one reference run ranks the configs like another run "
            "with a different seed (Kendall tau [90% bootstrap interval over configs]). This is the ceiling of "
            "the table above. Where the configs' accuracies differ by little more than seed noise, single runs "
            "agree poorly; the reference used above is the mean over seeds, steadier than one run.",
            "",
            "| reference seeds | Kendall tau (all) | Spearman rho (all) | n | Kendall tau (band) | n band |",
            "|---|---:|---:|---:|---:|---:|",
            *[
                f"| {k} | {tau(v) if v.get('kendall_tau_ci90') else fmt(v['kendall_tau'])} | "
                f"{fmt(v['spearman_rho'])} | {v['n']} | "
                + (f"{tau(rep_band[k])} | {rep_band[k]['n']} |" if k in rep_band else "n/a | 0 |")
                for k, v in rep.items()
            ],
        ]
    for label, key in (("all configs", "reference_noise"), ("band only", "reference_noise_band")):
        rn = result.get(key) or {}
        if rn.get("n", 0) < 3:
            continue
        need = rn["seeds_needed_for_target"]
        lines += [
            "",
            f"Reference noise against the configs' spread ({label}, {rn['n']} configs with "
            f"{rn['seeds_used']}+ seeds; **an estimate** from a normal model, see `reference_noise`): "
            f"seed-to-seed SD of one reference run {100 * rn['seed_sd']:.2f} points (mean |difference| "
            f"between seeds {100 * rn['mean_abs_seed_difference']:.2f}), SD of the configs' true accuracies "
            f"about {100 * rn['config_sd']:.2f} points. That predicts a seed-to-seed tau of "
            f"{rn['expected_tau_one_seed']:.2f} for single runs and {rn['expected_tau_mean_of_seeds']:.2f} between "
            f"two independent means of {rn['seeds_used']} seeds. A tau of {rn['target_tau']:g} would need "
            + (
                f"about {need} seeds per config at this recipe, or a recipe whose single-run seed SD is at most "
                f"{100 * rn['seed_sd_needed_for_target_one_seed']:.2f} points."
                if need is not None
                else "a reference whose configs differ measurably at all (their spread is within the noise here)."
            ),
        ]
    lines += [
        "",
        f"Reference training: mean {result['mean_seconds']['reference']:.1f} s per config "
        f"(all {len(a.get('ref_seeds') or [a['ref_seed']])} seed(s) of the main run). `train@1` and "
        "`trainloss` come from the same run as `train` (no extra cost).",
        "",
        "| # | group | MACs@224 | params | ref acc | train | trainloss | synflow | naswot | zen | config |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for i, r in enumerate(result["rows"]):
        s = r["scores"]
        ref = reference_acc(r)

        def g(k: str, s: dict[str, Any] = s) -> str:
            return f"{s[k]:.4g}" if k in s else "failed"

        lines.append(
            f"| {i} | {r['group']}{'*' if r.get('in_band') else ''} | {r['macs224'] / 1e6:.1f}M | {r['params224'] / 1e6:.2f}M | "
            f"{'failed' if ref is None else f'{ref:.4f}'} | {g('train')} | {g('trainloss')} | {g('synflow')} | "
            f"{g('naswot')} | {g('zen')} | `{r['short']}` |"
        )
    lines += ["", "`*`: inside the MACs band.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ghostnet_v1")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--scale",
        choices=tuple(PRESETS),
        default="cpu",
        help="preset of the flags left unset (see the docstring)",
    )
    parser.add_argument("--seed", type=int, default=0, help="config sampling, proxy and zero-cost seed")
    parser.add_argument("--ref-seed", type=int, default=1, help="first reference training seed")
    parser.add_argument(
        "--ref-seeds",
        type=int,
        nargs="+",
        help="reference seeds trained in this run (default: --ref-seed and the next, one for cpu-quick)",
    )
    parser.add_argument("--spread", type=int, help="configs stratified by MACs (cpu 7, gpu 10)")
    parser.add_argument("--band", type=int, help="configs inside the MACs band (cpu 5, gpu 6)")
    parser.add_argument("--macs-lo", type=float, help="cpu and gpu 15e6")
    parser.add_argument("--macs-hi", type=float, help="cpu 200e6, gpu 250e6")
    parser.add_argument("--band-lo", type=float, default=130e6)
    parser.add_argument("--band-hi", type=float, default=155e6)
    parser.add_argument("--proxy-images", type=int, help="training images the proxy sees in all")
    parser.add_argument("--proxy-epochs", type=int, default=2)
    parser.add_argument("--proxy-batch", type=int, help="cpu and gpu 128 (the default proxy's)")
    parser.add_argument("--proxy-val-images", type=int, help="cpu and gpu 2000 (the default proxy's)")
    parser.add_argument(
        "--ref-images",
        type=int,
        help="reference training subset, passed over --ref-epochs times (cpu 4000, gpu 20000)",
    )
    parser.add_argument(
        "--ref-factor",
        type=int,
        default=10,
        help="without --ref-images: reference = this times the proxy's images",
    )
    parser.add_argument("--ref-epochs", type=int, help="cpu 3, gpu 5")
    parser.add_argument("--ref-batch", type=int, help="cpu and gpu 128")
    parser.add_argument("--ref-schedule", choices=("linear", "cosine"), help="cpu and gpu cosine")
    parser.add_argument(
        "--ref-warmup", type=float, help="fraction of the reference's steps (cpu and gpu 0.05)"
    )
    parser.add_argument(
        "--ref-validate",
        choices=("end", "epochs"),
        help="validate the reference once at the end (cpu, gpu) or after every epoch",
    )
    parser.add_argument("--val-images", type=int, help="reference validation images (cpu and gpu 10000)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--lock", help="flock this file around each config's measurements")
    parser.add_argument("--limit", type=int, help="score only the first N configs (smoke test)")
    parser.add_argument("--resume", action="store_true", help="keep the rows of an interrupted run in --out")
    parser.add_argument(
        "--stop-after",
        type=float,
        help="minutes after which no new config is started; the table covers those done",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--add-ref-seed",
        type=int,
        help="train every scored config's reference once more with this seed (into ref-seed-N.json); "
        "then --render-only folds it in",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite fidelity.md from --out/fidelity.json"
    )
    args = parser.parse_args()
    if (args.render_only or args.add_ref_seed is not None) and not (args.out / "fidelity.json").is_file():
        raise SystemExit(f"fidelity: {args.out}/fidelity.json not found; run the benchmark into --out first")
    if args.render_only:
        (args.out / "fidelity.md").write_text(markdown(rerender(args.out)))
        info = run_info()
        with open(args.out / "renders.txt", "a") as fh:  # the table was recomputed: say by what
            fh.write(
                f"{info['utc']} {info['command']} # commit {info['git_commit']} dirty={info['git_dirty']}\n"
            )
        return
    # cpu and gpu: the proxy is exactly the search's default `train` recipe (2 epochs of 3,072
    # images, batch 128, 2,000 validation images); cpu-quick's is a reduced stand-in.
    apply_preset(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    t_start = time.perf_counter()
    info = run_info()
    configs = sample_configs(
        args.space, args.seed, args.spread, args.macs_lo, args.macs_hi, args.band, args.band_lo, args.band_hi
    )
    if args.limit:
        configs = configs[: args.limit]
    dataset = load_dataset(args.data, args.data_dir)
    proxy_recipe, ref_recipe = recipes(args)
    if args.add_ref_seed is not None:
        if args.add_ref_seed in args.ref_seeds:
            log.info("note: seed %d is already one of this run's --ref-seeds", args.add_ref_seed)
        add_reference_seed(args, dataset, ref_recipe)
        return
    evs: dict[str, Any] = {
        "train": TrainEvaluator(dataset, recipe=proxy_recipe, device=args.device, seed=args.seed),
        "synflow": SynflowEvaluator(args.data, args.device, args.seed),
        "naswot": NaswotEvaluator(args.data, args.data_dir, args.device, args.seed),
        "zen": ZenEvaluator(args.data, args.device, args.seed),
        "params": CostEvaluator("params", args.data, args.device, args.seed),
        "macs": CostEvaluator("macs", args.data, args.device, args.seed),
    }
    scale = ("GPU run" if args.scale == "gpu" else "reduced CPU run") + f" on {dataset.label}"
    n_seeds = len(args.ref_seeds)
    note = run_note(vars(args), f"{n_seeds} reference seed{'s' * (n_seeds != 1)} per config")
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    partial = args.out / "rows.partial.json"
    finished = args.out / "fidelity.json"
    if args.resume and partial.exists():
        rows = json.loads(partial.read_text())
        log.info("resuming: %d configs already scored by an earlier process", len(rows))
    elif args.resume and finished.exists():  # a run that ended at --stop-after: extend it
        rows = json.loads(finished.read_text())["rows"]
        log.info("extending: %d configs scored by an earlier, stopped run", len(rows))
    resumed = len(rows)
    done = {json.dumps(r["config"], sort_keys=True) for r in rows}
    stopped_early = False
    for i, (cfg, group) in enumerate(configs):
        if json.dumps(config_to_dict(cfg), sort_keys=True) in done:
            continue
        if args.stop_after is not None and time.perf_counter() - t_start > 60 * args.stop_after:
            stopped_early = True
            log.info("--stop-after reached: %d of %d configs scored", len(rows), len(configs))
            break
        cost = count_cost(cfg)
        with cpu_lock(args.lock):
            row = score_config(cfg, evs, dataset, ref_recipe, args)
        row.update(
            group=group,
            in_band=args.band_lo <= cost.macs <= args.band_hi,
            macs224=cost.macs,
            params224=cost.params,
            short=cfg.short(),
            config=config_to_dict(cfg),
        )
        rows.append(row)
        log.info(
            "%d/%d %s %.0fM: ref %s proxy %s (%.0f s)",
            i + 1,
            len(configs),
            group,
            cost.macs / 1e6,
            reference_seeds(row),
            row["scores"].get("train"),
            sum(row["seconds"].values()),
        )
        partial.write_text(json.dumps(rows, indent=1) + "\n")

    names = ("train", "synflow", "naswot", "zen", "params", "macs", "reference")
    result = {
        "scale": scale,
        "note": note,
        "data": dataset.label,
        "args": vars(args) | {"out": str(args.out)},
        "run": info,
        "proxy_recipe": vars(proxy_recipe),
        "reference_recipe": vars(ref_recipe),
        "n_in_band": sum(bool(r["in_band"]) for r in rows),
        "n_sampled": len(configs),
        "stopped_early": stopped_early,
        "resumed_rows": resumed,
        "reference_seeds": list(args.ref_seeds),
        **all_stats(rows),
        "mean_seconds": {n: sum(r["seconds"][n] for r in rows) / len(rows) for n in names},
        "total_s": time.perf_counter() - t_start,
        "rows": rows,
    }
    (args.out / "fidelity.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (args.out / "fidelity.md").write_text(markdown(result))
    (args.out / "run.json").write_text(json.dumps(result["run"] | {"args": result["args"]}, indent=1) + "\n")
    (args.out / "command.txt").write_text(
        f"{result['run']['command']}\n# commit {result['run']['git_commit']} dirty={result['run']['git_dirty']}\n"
        f"# machine: {result['run']['cpu']}, {result['run']['cpu_count']} cores, torch {result['run']['torch']}, "
        f"{result['run']['torch_threads']} threads, started {result['run']['utc']}\n"
    )
    partial.unlink(missing_ok=True)
    print(markdown(result))


if __name__ == "__main__":
    main()
