"""A trial's config as the study runner builds it: base keys plus one ``variant`` dict
(model / Kt / Ka / cell) from the grid. Trainables and the results export read it flat.

A trial may train a *pack* of models (see :func:`rim_rllib.pack`): ``seed`` and, for
RIMs, ``k`` may then be lists, and the trial's members are every ``k`` x every ``seed``,
in that order (:func:`pack_members`).
"""

import re

from rim_rllib.group import is_number
from rim_rllib.rim import RANK_RULES

#: What a numeric trial config value may be: a test of the (finite) number, and how an
#: error says it.
NUMBER_KINDS = {
    "positive": (lambda v: v > 0, "a positive finite number"),
    "weight": (lambda v: v >= 0, "a finite number >= 0"),
    "probability": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "fraction": (lambda v: 0 <= v <= 1, "a fraction in [0, 1]"),
    "positive int": (lambda v: isinstance(v, int) and v >= 1, "a positive int"),
    "int >= 0": (lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
}


def flat_config(config: dict) -> dict:
    """``config`` with its ``variant`` dict's keys merged in (variant wins)."""
    flat = {key: value for key, value in config.items() if key != "variant"}
    flat.update(config.get("variant", {}))
    return flat


def as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def pack_members(config: dict, model_key: str = "model") -> list[dict]:
    """The models a trial trains, in pack order: ``{"k": Ka, "seed": seed}`` for every
    ``k`` (``None`` for the LSTM baseline) and every ``seed`` of ``config``."""
    cfg = flat_config(config)
    ks = as_list(cfg.get("k")) if cfg.get(model_key, "rim") == "rim" else [None]
    return [{"k": k, "seed": seed} for k in ks for seed in as_list(cfg.get("seed", 0))]


def check_numbers(cfg: dict, kinds: dict[str, str], optional=(), where: str = "config"
                  ) -> None:
    """Each ``cfg[key]`` present is a finite number of its kind (:data:`NUMBER_KINDS`);
    ``optional`` keys may also be ``None``. ``nan``, ``inf``, text and bools are refused
    with an error naming the key, the value and what was expected. ``where``: how the
    error names the dict (``config['ppo']``)."""
    for key, kind in kinds.items():
        if key not in cfg or (cfg[key] is None and key in optional):
            continue
        accept, expected = NUMBER_KINDS[kind]
        if not (is_number(cfg[key]) and accept(cfg[key])):
            expected += " or None" if key in optional else ""
            raise ValueError(f"{where}[{key!r}] must be {expected}, got {cfg[key]!r}")


def config_error(err: Exception, cfg: dict, nested: str | None = None) -> ValueError:
    """A constructor's error about one of its arguments (``"score_noise must be ..."``) as
    the error about the trial config key it came from (``"config['score_noise'] must be
    ..."``; with ``nested``, a key of the dict ``cfg[nested]`` first); other errors are
    kept (their first line: RLlib adds advice below), marked as the trial config's."""
    text = str(err).strip().splitlines()[0]
    name = re.match(r"(\w+) must ", text)
    inner = cfg.get(nested) or {} if nested else {}
    if name and (name[1] in inner or name[1] in cfg):
        where = f"[{nested!r}]" if name[1] in inner else ""
        return ValueError(f"config{where}[{name[1]!r}]{text[len(name[1]):]}")
    return ValueError(f"trial config: {text}")


def check_rank_by(value) -> None:
    """``config['rank_by']``: how the RIMs choose their active units."""
    if value not in RANK_RULES:
        raise ValueError(f"config['rank_by'] must be one of {list(RANK_RULES)} (the paper's "
                         f"rule, the least attention to the null input, first; 'score' is "
                         f"the community implementation's), got {value!r}")


def check_k_anneal(value, unit: str) -> None:
    """``config['k_anneal']``: the fraction of the training ``unit`` (steps, frames) over
    which the RIMs' active units fall from all to Ka."""
    if not is_number(value) or not 0 <= value <= 1:
        raise ValueError(f"config['k_anneal'] must be the fraction of training {unit} in "
                         f"[0, 1] over which the RIMs' active units fall from all to Ka "
                         f"(0: Ka from the start), got {value!r}")
