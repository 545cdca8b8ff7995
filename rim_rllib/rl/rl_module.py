"""RIM (or the LSTM baseline) as a stateful RLModule for RLlib's current API stack, built
the way RLlib's own ``LSTMContainingRLModule`` example is.

    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    config.rl_module(rl_module_spec=RLModuleSpec(
        module_class=RIMActorCriticModule,
        model_config={"memory": "rim", "num_units": 4, "k": 3, "hidden_size": 16,
                      "max_seq_len": 32}))
"""

from dataclasses import fields
from typing import Any

from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.torch import TorchRLModule

from rim_rllib.actor_critic import MiniGridActorCritic

AUX_LOSS = "aux_loss"

# model_config keys that are RLlib's (its defaults are merged in), not the network's.
RLLIB_KEYS = {field.name for field in fields(DefaultModelConfig)} | {"max_seq_len"}


def network_kwargs(model_config: dict) -> dict:
    return {key: value for key, value in dict(model_config).items() if key not in RLLIB_KEYS}


class RIMActorCriticModule(TorchRLModule, ValueFunctionAPI):
    """CNN → RIM/LSTM → actor and critic (:class:`rim_rllib.actor_critic.MiniGridActorCritic`).

    ``model_config``: ``memory`` (``"rim"``/``"lstm"``), ``num_units``, ``hidden_size``,
    ``k``, ``cell``, RIM attention sizes, ``balance_loss`` (a weight: the training forward
    then returns the weighted load-balancing loss as ``"aux_loss"``, which
    :class:`RIMPPOTorchLearner` adds to PPO's loss), and RLlib's ``max_seq_len`` (truncated
    BPTT length). State: ``{"h": (S,), "c": (S,)}`` per episode (``"h"`` only for GRU
    units; ``"tired"`` :math:`(K_t,)` too for a RIM with ``fatigue``). Training forwards
    pass the batch's loss mask to the RIM, so that its usage statistics (``balance_loss``,
    ``usage_floor``) skip the padding.
    """

    def setup(self):
        self.net = MiniGridActorCritic(self.action_space.n,
                                       image_shape=self.observation_space.shape,
                                       **network_kwargs(self.model_config))

    def get_initial_state(self) -> Any:
        return {key: state.numpy() for key, state in self.net.initial_state().items()}

    def _forward(self, batch, **kwargs):
        embeddings, state_out, _ = self.net.embed(batch[Columns.OBS], batch[Columns.STATE_IN])
        return {Columns.ACTION_DIST_INPUTS: self.net.actor(embeddings),
                Columns.STATE_OUT: state_out}

    def _forward_train(self, batch, **kwargs):
        embeddings, state_out, stats = self.net.embed(
            batch[Columns.OBS], batch[Columns.STATE_IN], valid=batch.get(Columns.LOSS_MASK),
            return_stats=self.net.balance_loss > 0)
        out = {Columns.ACTION_DIST_INPUTS: self.net.actor(embeddings),
               Columns.STATE_OUT: state_out, Columns.EMBEDDINGS: embeddings}
        aux = self.net.aux_loss(stats)
        return out if aux is None else out | {AUX_LOSS: aux}

    def compute_values(self, batch, embeddings=None):
        if embeddings is None:
            embeddings, _, _ = self.net.embed(batch[Columns.OBS], batch[Columns.STATE_IN],
                                              valid=batch.get(Columns.LOSS_MASK))
        return self.net.value(embeddings)


class RIMPPOTorchLearner(PPOTorchLearner):
    """PPO's learner plus the module's ``"aux_loss"`` (the RIM's weighted load-balancing
    loss, when its ``balance_loss`` is on), logged as ``balance_loss``."""

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        loss = super().compute_loss_for_module(module_id=module_id, config=config,
                                               batch=batch, fwd_out=fwd_out)
        aux = fwd_out.get(AUX_LOSS)
        if aux is None:
            return loss
        self.metrics.log_value((module_id, "balance_loss"), aux.detach(), window=1)
        return loss + aux
