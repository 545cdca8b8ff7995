"""RLlib integration: MiniGrid environments by name, RIM on both API stacks, PPO configs.

Importing this package registers every ``MiniGrid-*`` environment and the classic-stack
model name ``rim`` (the same as calling :func:`register`).
"""

from rim_rllib.rl.classic import RIMRecurrentModel, register_classic_model
from rim_rllib.rl.envs import make_minigrid, minigrid_ids, register_minigrid_envs
from rim_rllib.rl.rl_module import RIMActorCriticModule, RIMPPOTorchLearner


def register() -> None:
    """Make the MiniGrid env names and the model name ``rim`` known to RLlib."""
    register_minigrid_envs()
    register_classic_model()


register()

__all__ = ["RIMActorCriticModule", "RIMPPOTorchLearner", "RIMRecurrentModel",
           "make_minigrid", "minigrid_ids", "register"]
