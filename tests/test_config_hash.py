"""Every registered trigger, attack, defense and model: complete configs that rebuild, stable hashes.

Built from the registries, so a newly registered method is covered without touching this file: for
each entry, ``config()`` is JSON data that rebuilds an object with the same config (and hash), two
builds with equal options hash equal, and changing any single option to another valid value
changes the hash. A last test checks that no two different configurations made here share a hash.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from backdoorlab.attacks import ATTACKS, MODES
from backdoorlab.config import canonical_json, config_hash
from backdoorlab.defenses import DEFENSES
from backdoorlab.defenses.data_sanitize.activation_clustering import CRITERIA as AC_CRITERIA
from backdoorlab.defenses.data_sanitize.spectral import ORIENTS
from backdoorlab.defenses.input_detection.strip import BLENDS
from backdoorlab.defenses.model_scan.neural_cleanse import CRITERIA as NC_CRITERIA
from backdoorlab.errors import ConfigError
from backdoorlab.models import MODELS, arch_config, model_config, model_from_config
from backdoorlab.registry import Registry
from backdoorlab.triggers import SHAPES, TEXTURES, TRIGGERS
from backdoorlab.triggers.blend import NOISE_DISTRIBUTIONS, SIG_SIGNALS

REGISTRIES: dict[str, Registry[Any]] = {
    "triggers": TRIGGERS,
    "attacks": ATTACKS,
    "defenses": DEFENSES,
    "models": MODELS,
}
ENTRIES = [(fam, name) for fam, reg in REGISTRIES.items() for name in reg.names()]
IDS = [f"{fam}:{name}" for fam, name in ENTRIES]

# Alternative values for string options: hints by option name first, then every choice the
# methods know (an alternative that a method rejects with ConfigError is skipped).
HINTS: dict[str, list[Any]] = {
    "eps": [0.1, 0.3],
    "device": ["cpu"],
    "layer": ["auto", "hidden"],
    "labels": ["predicted", "given"],
    "optimizer": ["sgd"],
    "arch": ["lenet5", "small_cnn"],
    "message": ["hello"],
    "color": ["red", "#00ff00"],
    "position": ["top-left", "4,5", "random"],
}
POOL: list[str] = [
    *MODES,
    *SHAPES,
    *TEXTURES,
    *NOISE_DISTRIBUTIONS,
    *SIG_SIGNALS,
    *BLENDS,
    *ORIENTS,
    *AC_CRITERIA,
    *NC_CRITERIA,
    "size+silhouette",
    "ica",
    "pca",
    "normal",
    "empirical",
    "solid",
    "checker",
    "random",
    "top-left",
    "red",
    "#00ff00",
    "pixel",
    "filter",
]


def build(fam: str, name: str, **options: Any) -> dict[str, Any]:
    """The canonical config (name + options) of an entry built with ``options``."""
    if fam == "models":
        return {"name": name, "options": arch_config(name, **options)}
    obj = REGISTRIES[fam].create(name, **options)
    return {"name": obj.name, "options": obj.config()}


def base_options(fam: str, name: str) -> dict[str, Any]:
    """The options of an entry built with its defaults (models: shape arguments included)."""
    if fam == "models":
        cfg = arch_config(name)
        return {
            "num_classes": cfg["num_classes"],
            "input_shape": cfg["input_shape"],
            **cfg["options"],
        }
    return build(fam, name)["options"]


def alternatives(fam: str, option: str, value: Any) -> list[Any]:
    """Candidate values different from ``value``, of the same kind."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1, value * 2]
    if isinstance(value, float):
        return [value * 1.5, value + 0.1, value * 0.5, value - 0.1]
    if isinstance(value, str):
        return [s for s in [*HINTS.get(option, []), *POOL] if s != value]
    if value is None:
        return [1, 0.5, [[0.25, 0.5], [0.75, 1.0]]]
    if isinstance(value, dict) and {"name", "options"} <= set(value):  # a nested configurable
        return [{"name": n, "options": {}} for n in TRIGGERS.names() if n != value["name"]][:3]
    if isinstance(value, list):
        if not value:
            return [[1], [2]]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [[v * 1.5 if isinstance(v, float) else v + 1 for v in value], value[:-1]]
        return [value[:-1], value[1:], list(reversed(value))]
    return []


@functools.cache
def variants(fam: str, name: str) -> tuple[list[tuple[str, Any, dict[str, Any]]], list[str]]:
    """For every option: the first valid alternative and the config it gives; options without one."""
    base = base_options(fam, name)
    base_cfg = build(fam, name, **base)
    found: list[tuple[str, Any, dict[str, Any]]] = []
    missing: list[str] = []
    for opt, value in base.items():
        for alt in alternatives(fam, opt, value):
            try:
                cfg = build(fam, name, **{**base, opt: alt})
            except ConfigError:
                continue
            if canonical_json(cfg) != canonical_json(base_cfg):
                found.append((opt, alt, cfg))
                break
        else:
            missing.append(opt)
    return found, missing


def entry_hash(cfg: dict[str, Any]) -> str:
    return config_hash(cfg)


@pytest.mark.parametrize("fam,name", ENTRIES, ids=IDS)
def test_config_rebuilds_and_equal_configs_hash_equal(fam: str, name: str) -> None:
    if fam == "models":
        model = model_from_config(arch_config(name), seed=0)
        cfg = model_config(model)
        again = model_config(model_from_config(json.loads(json.dumps(cfg)), seed=1))
        assert again == cfg
        assert config_hash(again) == config_hash(cfg)
        assert config_hash(arch_config(name)) == config_hash(cfg)
        return
    reg = REGISTRIES[fam]
    obj = reg.create(name)
    cfg = obj.config()
    text = json.dumps(cfg)  # JSON-friendly
    rebuilt = reg.create(name, **json.loads(text))
    assert rebuilt.config() == cfg
    assert rebuilt.config_hash() == obj.config_hash() == reg.create(name).config_hash()
    assert reg.from_config(obj.describe()).config_hash() == obj.config_hash()
    desc = obj.describe()
    assert desc["name"] == name


@pytest.mark.parametrize("fam,name", ENTRIES, ids=IDS)
def test_changing_any_option_changes_the_hash(fam: str, name: str) -> None:
    found, missing = variants(fam, name)
    assert not missing, f"{fam} {name}: no valid alternative value found for {missing}"
    base = entry_hash(build(fam, name, **base_options(fam, name)))
    for opt, alt, cfg in found:
        assert entry_hash(cfg) != base, f"{fam} {name}: {opt}={alt!r} kept the hash"


def _all_hashes() -> tuple[dict[str, set[str]], int, int]:
    seen: dict[str, set[str]] = {}
    n_entries = n_options = 0
    for fam, name in ENTRIES:
        n_entries += 1
        cfgs = [build(fam, name, **base_options(fam, name))]
        found, _ = variants(fam, name)
        n_options += len(found)
        cfgs += [cfg for _, _, cfg in found]
        for cfg in cfgs:
            seen.setdefault(entry_hash(cfg), set()).add(canonical_json(cfg))
    return seen, n_entries, n_options


def test_no_collisions_over_every_hash_made() -> None:
    seen, n_entries, n_options = _all_hashes()
    # every entry registered when this module was collected, and no family left empty
    assert n_entries == len(ENTRIES)
    assert {fam for fam, _ in ENTRIES} == set(REGISTRIES)
    collisions = {h: texts for h, texts in seen.items() if len(texts) > 1}
    assert not collisions
    assert len(seen) == n_entries + n_options  # every variant is a distinct configuration


def test_hash_ignores_key_order_and_tuple_vs_list() -> None:
    a = {"x": 1.5, "y": (1, 2), "z": {"b": None, "a": "s"}}
    b = {"z": {"a": "s", "b": None}, "y": [1, 2], "x": 1.5}
    assert config_hash(a) == config_hash(b)
    assert canonical_json(a) == '{"x":1.5,"y":[1,2],"z":{"a":"s","b":null}}'
    assert config_hash({"x": 1.5}) != config_hash({"x": 1.5000000000000002})


def test_nested_trigger_rebuilds_from_its_config() -> None:
    atk = ATTACKS.create("badnets", trigger=TRIGGERS.create("blend", alpha=0.3), target=2)
    cfg = atk.config()
    assert cfg["trigger"] == {"name": "blend", "options": {"alpha": 0.3, "image": None, "seed": 0}}
    again = ATTACKS.create("badnets", **json.loads(json.dumps(cfg)))
    assert again.trigger.name == "blend" and again.trigger.alpha == 0.3
    assert again.config_hash() == atk.config_hash()
    assert ATTACKS.create("badnets", trigger="blend").trigger.name == "blend"


def test_runtime_inputs_and_state_stay_out_of_config() -> None:
    nc_unlearn = DEFENSES.create("nc-unlearning")
    assert "scan" not in nc_unlearn.config() and "scan_result" not in nc_unlearn.config()
    strip = DEFENSES.create("strip")
    strip.threshold = 0.5  # as fit() would set it
    assert "threshold" not in strip.config()
    assert strip.config_hash() == DEFENSES.create("strip").config_hash()
    assert "reference" not in ATTACKS.create("label-consistent").config()


def test_bad_nested_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown trigger"):
        ATTACKS.create("badnets", trigger={"name": "nope", "options": {}})
    with pytest.raises(ConfigError, match="bogus"):
        ATTACKS.create("badnets", trigger={"name": "patch", "options": {"bogus": 1}})


def summary() -> dict[str, int]:
    """Entries covered, options varied, hash collisions (for reports)."""
    seen, n_entries, n_options = _all_hashes()
    return {
        "entries": n_entries,
        "options_varied": n_options,
        "hashes": len(seen),
        "collisions": sum(len(t) - 1 for t in seen.values() if len(t) > 1),
    }
