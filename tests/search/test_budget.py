"""Budget strings, objectives and the cost metrics a search checks."""

from __future__ import annotations

import pytest

import ghostnas
from ghostnas.budget import Budget, BudgetError, candidate_costs, parse_budget, parse_objectives


@pytest.mark.parametrize(
    ("text", "metric", "limit"),
    [
        ("150MFLOPs", "macs", 150e6),
        ("0.15GFLOPs", "macs", 150e6),
        ("150M", "macs", 150e6),
        ("150MMACs", "macs", 150e6),
        ("150 MFLOPs", "macs", 150e6),
        ("150mflops".upper(), "macs", 150e6),
        ("1.5e8", "macs", 150e6),
        ("600kflops", "macs", 600e3),
        ("5Mparams", "params", 5e6),
        ("2.5M params", "params", 2.5e6),
        ("12ms", "latency_ms", 12.0),
        ("800us", "latency_ms", 0.8),
        ("0.02s", "latency_ms", 20.0),
    ],
)
def test_budget_strings(text, metric, limit):
    b = parse_budget(text)
    assert b.metric == metric
    assert b.limit == pytest.approx(limit)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", "cannot read"),
        ("abc", "cannot read"),
        ("150mflops", "unknown unit 'mflops'"),
        ("5Mbytes", "unknown unit 'bytes'"),
        ("0M", "must be positive"),
        ("-5MFLOPs", "must be positive"),
        ("1e999M", "not a finite number"),
        ("inf", "cannot read"),
        ("nan", "cannot read"),
        ("12Ms", "takes no 'M' prefix"),
    ],
)
def test_bad_budget_strings_give_one_line(text, pattern):
    with pytest.raises(BudgetError, match=pattern) as info:
        parse_budget(text)
    assert "\n" not in str(info.value)
    assert "150MFLOPs" in str(info.value)  # the fix is in the message


def test_budget_checks_and_names():
    b = parse_budget("150MFLOPs")
    ref = candidate_costs(ghostnas.resolve_config("ghostnet_100"))
    assert ref == {"macs": 141_150_512.0, "params": 5_182_508.0}
    assert b.fits(ref) and b.excess(ref) < 0
    big = candidate_costs(ghostnas.resolve_config("ghostnet_130"))
    assert not b.fits(big) and b.excess(big) == pytest.approx(227_003_256 / 150e6 - 1)
    assert b.describe() == "150M MACs" and b.slug() == "150MMACs"
    assert parse_budget("0.5Mparams").slug() == "500Kparams"
    with pytest.raises(BudgetError):
        Budget("flops", 1.0)
    with pytest.raises(BudgetError):
        Budget("macs", float("nan"))


def test_objectives():
    assert [o.name for o in parse_objectives("accuracy,macs")] == ["accuracy", "macs"]
    assert [o.direction for o in parse_objectives("accuracy, params")] == ["maximize", "minimize"]
    assert len(parse_objectives("accuracy")) == 1
    assert [o.name for o in parse_objectives("accuracy,latency")] == ["accuracy", "latency_ms"]
    for bad, pattern in [
        ("", "no objectives"),
        ("macs", "accuracy must come first"),
        ("accuracy,accuracy", "twice"),
        ("accuracy,speed", "unknown objective"),
    ]:
        with pytest.raises(BudgetError, match=pattern):
            parse_objectives(bad)
