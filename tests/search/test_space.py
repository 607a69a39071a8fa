"""Search spaces: YAML loading and validation, replay of parameters, membership, size, cost range."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import optuna
import pytest

import ghostnas
from ghostnas.cli import main
from ghostnas.config import GhostNetConfig
from ghostnas.cost import count_cost
from ghostnas.errors import GhostnasError
from ghostnas.space import SearchSpace, SpaceError, builtin_space_dir, list_spaces, load_space, loads_space
from tests.paths import REPO

SPACE_FILES = sorted((REPO / "search_spaces").glob("*.yaml"))
TINY = (REPO / "search_spaces" / "tiny.yaml").read_text()

optuna.logging.set_verbosity(optuna.logging.WARNING)


def enumerate_space(space: SearchSpace) -> Iterator[GhostNetConfig]:
    """Every decision path of a space, by an odometer over the builder's choices."""
    prefix: list[int] = []
    while True:
        counts: list[int] = []

        def choose(_name, choices, _grid, _weights, counts=counts, prefix=prefix):
            i = len(counts)
            counts.append(len(choices))
            return choices[prefix[i] if i < len(prefix) else 0]

        yield space._build(choose)
        idxs = [prefix[i] if i < len(prefix) else 0 for i in range(len(counts))]
        while idxs and idxs[-1] + 1 == counts[len(idxs) - 1]:
            idxs.pop()
        if not idxs:
            return
        idxs[-1] += 1
        prefix = idxs


def test_repository_folder_is_the_package_folder():
    assert (REPO / "search_spaces").is_symlink()
    assert (REPO / "search_spaces").resolve() == builtin_space_dir().resolve()
    assert {p.stem for p in SPACE_FILES} == set(list_spaces())
    assert {"ghostnet_v1", "tiny"} <= set(list_spaces())


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.stem)
def test_every_space_file_loads_by_name_and_path(path):
    by_name, by_path = load_space(path.stem), load_space(str(path))
    assert by_name.name == by_path.name == path.stem
    assert by_name == by_path
    assert by_name.size() > 0


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.stem)
def test_every_space_replays_sampled_params_exactly(path):
    space = load_space(path)
    rng = random.Random(0)
    crange = space.cost_range()
    for _ in range(50):
        cfg = space.sample(rng)
        params = space.config_to_params(cfg)
        assert space.params_to_config(params) == cfg
        assert set(params) <= set(space.parameter_names())
        cost = count_cost(cfg)
        assert crange.min_macs <= cost.macs <= crange.max_macs
        assert crange.min_params <= cost.params <= crange.max_params


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.stem)
def test_optuna_trial_params_replay_to_the_suggested_config(path):
    space = load_space(path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    configs = {}

    def objective(trial):
        cfg = space.suggest(trial)
        configs[trial.number] = cfg
        return count_cost(cfg).macs

    study.optimize(objective, n_trials=15)
    for t in study.trials:
        assert space.params_to_config(t.params) == configs[t.number]
    # Storage round trip: params survive JSON (what the CSV and the SQLite storage keep).
    for t in study.trials:
        assert space.params_to_config(json.loads(json.dumps(t.params))) == configs[t.number]


@pytest.mark.parametrize("space_name", ["ghostnet_v1", "ghostnet_v1_stagewise"])
@pytest.mark.parametrize("model", ["ghostnet_050", "ghostnet_100", "ghostnet_130"])
def test_ghostnet_table_is_a_point_of_the_default_space(space_name, model):
    space = load_space(space_name)
    cfg = ghostnas.resolve_config(model)
    params = space.config_to_params(cfg)
    assert space.params_to_config(params) == cfg
    assert space.contains(cfg)


def test_enqueued_reference_is_what_the_first_trial_builds():
    space = load_space("ghostnet_v1")
    cfg = ghostnas.resolve_config("ghostnet_100").with_width(1.05)
    study = optuna.create_study()
    study.enqueue_trial(space.config_to_params(cfg))
    built = []
    study.optimize(lambda t: len(built.append(space.suggest(t)) or []), n_trials=1)
    assert built == [cfg]


def test_non_members_are_refused_with_the_reason():
    space = load_space("ghostnet_v1")
    ref = ghostnas.resolve_config("ghostnet_100")
    with pytest.raises(SpaceError, match=r"width 1\.02 is not on its grid"):
        space.config_to_params(ref.with_width(1.02))
    with pytest.raises(SpaceError, match="not a point"):
        space.config_to_params(ghostnas.resolve_config("ghostnet_tiny"))
    assert not space.contains(ghostnas.resolve_config("ghostnet_tiny"))


def test_bad_params_are_refused():
    space = loads_space(TINY)
    good = space.config_to_params(space.sample(random.Random(3)))
    with pytest.raises(SpaceError, match="missing"):
        space.params_to_config({k: v for k, v in good.items() if k != "s"})
    with pytest.raises(SpaceError, match="not a choice"):
        space.params_to_config({**good, "s": 7})
    with pytest.raises(SpaceError, match="not on the grid"):
        space.params_to_config({**good, "width": 0.6})
    with pytest.raises(SpaceError, match="unknown or inactive parameter 'bogus'"):
        space.params_to_config({**good, "bogus": 1})


@pytest.mark.parametrize("per_stage", [False, True])
def test_size_sampling_and_cost_range_match_brute_force_on_tiny(per_stage):
    text = TINY if not per_stage else TINY.replace("ghost_per_stage: false", "ghost_per_stage: true")
    space = loads_space(text)
    configs = list(enumerate_space(space))
    assert len(set(configs)) == len(configs) == space.size()
    costs = [count_cost(c) for c in configs]
    crange = space.cost_range()
    assert crange.min_macs == min(c.macs for c in costs)
    assert crange.max_macs == max(c.macs for c in costs)
    assert crange.min_params == min(c.params for c in costs)
    assert crange.max_params == max(c.params for c in costs)
    # Every enumerated config replays through its own params.
    for cfg in configs[:: max(1, len(configs) // 200)]:
        assert space.params_to_config(space.config_to_params(cfg)) == cfg


def test_sample_is_uniform_over_depths():
    # tiny: stage 1 has 16 points at depth 1 and 64 at depth 2, so depth 2 should be ~80%.
    space = loads_space(TINY)
    rng = random.Random(0)
    deep = sum(len(space.sample(rng).stages[1].blocks) == 2 for _ in range(2000))
    assert 0.75 < deep / 2000 < 0.85


BAD_YAML = [
    ("name: x\nnetwork: !!python/object/apply:os.system ['true']\n", "line 2: .*no tags"),
    ("name: x\nname: y\n", "line 2: duplicate key 'name'"),
    ("name: [unclosed\n", "line 2"),
    ("- a\n- b\n", "expected a mapping, got a list"),
    ("", "empty"),
    (
        TINY.replace("  ghost_per_stage: false\n", "  ghost_per_stage: false\n  colour: red\n"),
        r"line \d+: network.colour: unknown key",
    ),
    (TINY.replace("s: [2, 3]", "s: [2, 1]"), r"network.s: 1 is not a Ghost ratio"),
    (TINY.replace("s: [2, 3]", "s: []"), r"network.s: an empty list"),
    (TINY.replace("d: [1, 3]", "d: [1, 1]"), r"network.d: choice 1 is listed twice"),
    (
        TINY.replace(
            "{k: 3, exp: [2, 3], c: [12, 16], se: 0, stride: 1}",
            "{k: 3, exp: [2, 3], c: [12, 16], se: 0, stride: 2}",
        ),
        r"line \d+: stages\[1\].blocks\[1\].stride: only a stage's first block",
    ),
    (TINY.replace("depth: [1, 2]", "depth: [1, 3]"), r"stages\[1\].depth: allows 3 blocks but only 2"),
    (
        TINY.replace("{k: [3, 5], exp: [2, 3]", "{k: [3, 4], exp: [2, 3]"),
        r"stages\[1\].blocks\[0\].k: 4 is not an odd kernel",
    ),
    (TINY.replace("{k: [3, 5], exp: [2, 3]", "{k: [3, 5], exp: [2, 2.1]"), r"exp ratios 2 and 2.1 both give"),
    (TINY.replace("step: 0.25", "step: 0.3"), r"network.width.step: 0.3 does not divide"),
    (
        TINY.replace("    - blocks: [{k: 3, exp: 8, c: 8", "    - blocks: [{k: 3, exp: 12, c: 8"),
        r"line 4: reference: .*not a point",
    ),
    (TINY.replace("network:\n", "networks:\n", 1), r"networks: unknown key"),
]


@pytest.mark.parametrize(("text", "pattern"), BAD_YAML)
def test_malformed_space_yaml_gives_one_line_naming_line_or_key(text, pattern):
    with pytest.raises(SpaceError, match=pattern) as info:
        loads_space(text, "bad.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("bad.yaml")


def test_space_errors_are_ghostnas_errors_and_unknown_names_list_choices(tmp_path):
    with pytest.raises(GhostnasError, match=r"unknown search space 'nope'; choose one of .*ghostnet_v1"):
        load_space("nope")
    with pytest.raises(SpaceError, match="no such search-space file"):
        load_space(tmp_path / "missing.yaml")
    with pytest.raises(SpaceError, match="is a directory"):
        load_space(str(tmp_path) + "/")


def test_cli_describe_and_list(capsys, tmp_path):
    assert main(["space", "describe", "tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    space = load_space("tiny")
    assert info["size"] == space.size() == 3840
    assert info["macs"] == [space.cost_range().min_macs, space.cost_range().max_macs]
    assert main(["space", "describe", str(REPO / "search_spaces" / "tiny.yaml")]) == 0
    out = capsys.readouterr().out
    assert "3,840" in out and "224x224" in out
    assert main(["space", "list"]) == 0
    assert "ghostnet_v1" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnetwork: !!python/object:os.system {}\n")
    assert main(["space", "describe", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2" in err
