"""MiniGrid environments for RLlib: every ``MiniGrid-*`` gymnasium id, registered under its
own name, observed through the agent's 7x7x3 egocentric view (no mission string), as
float32 (object, colour and state indices, not normalised) so that RLlib's own models read
it too.

    config.environment("MiniGrid-DoorKey-5x5-v0", env_config={"max_steps": 200})
"""

from functools import partial

import gymnasium as gym
import numpy as np
import minigrid  # noqa: F401  (registers the MiniGrid-* ids with gymnasium)
from minigrid.wrappers import ImgObsWrapper
from ray.tune.registry import register_env

ENV_OPTIONS = {
    "max_steps": "episode length limit (default: the environment's own)",
    "render_mode": "'rgb_array' to render frames (for GIFs)",
}


def minigrid_ids() -> list[str]:
    return sorted(name for name in gym.registry if name.startswith("MiniGrid-"))


def check_env_id(env_id: str) -> None:
    if env_id not in gym.registry or not env_id.startswith("MiniGrid-"):
        raise ValueError(f"unknown MiniGrid environment {env_id!r}; available: "
                         + ", ".join(minigrid_ids()))


def make_minigrid(env_id: str, env_config: dict | None = None) -> gym.Env:
    """The environment ``env_id`` with image-only float32 observations,
    Box(0, 255, (7, 7, 3))."""
    check_env_id(env_id)
    options = dict(env_config or {})
    unknown = set(options) - set(ENV_OPTIONS)
    if unknown:
        raise ValueError(f"unknown MiniGrid env_config option(s) {sorted(unknown)}; "
                         "available: " + "; ".join(f"{k}: {v}" for k, v in ENV_OPTIONS.items()))
    return gym.wrappers.DtypeObservation(ImgObsWrapper(gym.make(env_id, **options)),
                                         np.float32)


def register_minigrid_envs() -> None:
    """Register every MiniGrid id with RLlib (Tune's registry, shared with workers)."""
    for env_id in minigrid_ids():
        register_env(env_id, partial(make_minigrid, env_id))
