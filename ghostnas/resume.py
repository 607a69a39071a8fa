"""Resuming a study: what must match for a run to continue an existing study.

A study remembers the settings that decide what its scores mean (its *fingerprint*, a study
user attribute written when the study is created). Running again with the same settings loads
the study and runs only the missing trials; a study created with other values is not resumed,
and the error names the difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ghostnas.search_settings import SearchError

if TYPE_CHECKING:
    import optuna

__all__ = ["FINGERPRINT_ATTR", "FINGERPRINT_KEYS", "check_fingerprint", "load_existing"]

FINGERPRINT_ATTR = "ghostnas"
"""The study user attribute that holds the fingerprint."""

FINGERPRINT_KEYS = (
    "space",
    "budget",
    "objectives",
    "evaluator",
    "epochs",
    "data",
    "cost_at",
    "data_digest",
    "rungs",
    "task",
    "image_size",
)
"""Settings that change what a trial's score means."""


def load_existing(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    fingerprint: Mapping[str, Any],
    objectives: Sequence[str],
    directions: list[str],
) -> list[optuna.trial.FrozenTrial]:
    """Trials of an existing study named ``study_name`` (empty when there is none), after
    checking that it was created with the same settings and objectives."""
    import optuna

    try:
        probe = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return []
    check_fingerprint(probe, study_name, fingerprint)
    if [d.name.lower() for d in probe.directions] != directions:
        raise SearchError(
            f"study {study_name!r} optimises {len(probe.directions)} objective(s), not "
            f"{','.join(objectives)}; use the same --objectives or another --study"
        )
    return probe.get_trials(deepcopy=False)


def check_fingerprint(study: optuna.Study, study_name: str, fingerprint: Mapping[str, Any]) -> None:
    """Raise :class:`SearchError` naming the first fingerprint key the study differs in."""
    old = study.user_attrs.get(FINGERPRINT_ATTR)
    if not old:
        return
    for key in FINGERPRINT_KEYS:
        if key in old and old[key] != fingerprint.get(key):
            raise SearchError(
                f"study {study_name!r} was created with {key} {old[key]!r}, not {fingerprint.get(key)!r}; "
                "resume with the same settings or choose another --out/--study"
            )
