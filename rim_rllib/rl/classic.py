"""The name ``rim`` for RLlib's classic (old) API stack:

    config.api_stack(enable_rl_module_and_learner=False,
                     enable_env_runner_and_connector_v2=False)
    config.training(model={"custom_model": "rim", "max_seq_len": 32,
                           "custom_model_config": {"memory": "rim", "k": 3}})
"""

from ray.rllib.models import ModelCatalog
from ray.rllib.models.torch.recurrent_net import RecurrentNetwork
import torch
from torch import nn

from rim_rllib.actor_critic import MiniGridActorCritic

MODEL_NAME = "rim"


class RIMRecurrentModel(RecurrentNetwork, nn.Module):
    """The same network as :class:`rim_rllib.rl.rl_module.RIMActorCriticModule`, as a
    classic-stack ``RecurrentNetwork``; ``custom_model_config`` takes the same keys."""

    def __init__(self, obs_space, action_space, num_outputs, model_config, name,
                 **custom_model_config):
        nn.Module.__init__(self)
        super().__init__(obs_space, action_space, num_outputs, model_config, name)
        image_shape = getattr(obs_space, "original_space", obs_space).shape
        self.net = MiniGridActorCritic(num_outputs, image_shape=image_shape,
                                       **custom_model_config)
        self._values = None
        self._aux = None  # the training forward's weighted load-balancing loss
        self._balance_loss = None

    def get_initial_state(self):
        return [self.net.initial_state()[key] for key in self.net.state_keys]

    def forward_rnn(self, inputs, state, seq_lens):
        batch, steps = inputs.shape[:2]
        obs = inputs.reshape(batch, steps, *self.net.image_shape)
        # RLlib pads each sequence to max_seq_len; only the first seq_lens steps are real.
        valid = (None if seq_lens is None else
                 torch.arange(steps, device=inputs.device) < seq_lens.to(inputs.device)[:, None])
        embeddings, new_state, stats = self.net.embed(
            obs, dict(zip(self.net.state_keys, state)), valid=valid,
            return_stats=self.net.balance_loss > 0)
        # RLlib's classic stack asks for the extra loss after the forward, in custom_loss.
        self._aux = self.net.aux_loss(stats)
        self._values = self.net.value(embeddings).reshape(-1)
        return self.net.actor(embeddings), [new_state[key] for key in self.net.state_keys]

    def value_function(self):
        return self._values

    def custom_loss(self, policy_loss, loss_inputs):
        """PPO's loss plus the RIM's weighted load-balancing loss of the training forward
        (``balance_loss`` in ``custom_model_config``; unchanged when off)."""
        if self._aux is None:
            return policy_loss
        self._balance_loss = self._aux.detach()
        return [loss + self._aux for loss in policy_loss]

    def metrics(self):
        return {"balance_loss": self._balance_loss} if self._balance_loss is not None else {}


def register_classic_model() -> None:
    ModelCatalog.register_custom_model(MODEL_NAME, RIMRecurrentModel)
