"""The sampler factory: a sampler by name, seeded (Optuna's TPE, NSGA-II, random, GP).

A search takes any Optuna sampler object; this module makes the four the CLI names.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from ghostnas.search_settings import SearchError

if TYPE_CHECKING:
    import optuna

__all__ = ["SAMPLERS", "make_sampler"]

SAMPLERS = ("tpe", "nsga2", "random", "gp")


def make_sampler(name: str, seed: int, trials: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    """The sampler called ``name``, seeded.

    TPE is multivariate and grouped (it models joint choices across the conditional block
    parameters, and is cheaper per trial than independent TPE on many parameters). NSGA-II's
    population is a third of the trial budget (between 4 and 50) so it breeds within short runs.
    """
    import optuna

    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, n_startup_trials=min(10, max(2, trials // 3))
            )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 3)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        import importlib.util

        if importlib.util.find_spec("scipy") is None:
            raise SearchError(
                "the gp sampler needs scipy: pip install 'ghostnas[gp]' (or scipy), or use --sampler tpe"
            )
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=min(10, max(2, trials // 3)))
    raise SearchError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
