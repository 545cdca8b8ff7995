"""The task networks (torch only): the sequential-MNIST classifier and the MiniGrid agent."""

import pytest
import torch

from rim_rllib.actor_critic import MiniGridActorCritic
from rim_rllib.models import SequenceClassifier

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SMALL = dict(input_key_size=8, input_query_size=8, input_value_size=8, comm_key_size=8,
             comm_query_size=8, comm_value_size=8, num_comm_heads=2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", ["rim", "lstm"])
def test_sequence_classifier(model, device):
    net = SequenceClassifier(model, 1, 10, hidden_size=8, num_units=4, k=2, **SMALL).to(device)
    x = torch.randint(0, 2, (5, 49, 1), device=device).float()
    logits, mask = net(x, return_mask=True)
    assert logits.shape == (5, 10) and logits.device.type == device
    if model == "rim":
        assert mask.shape == (5, 49, 4) and (mask.sum(-1) == 2).all()
    else:
        assert mask is None
    torch.nn.functional.cross_entropy(logits, torch.arange(5, device=device)).backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory, cell", [("rim", "lstm"), ("rim", "gru"), ("lstm", "lstm")])
def test_minigrid_actor_critic(memory, cell, device):
    net = MiniGridActorCritic(7, memory=memory, cell=cell).to(device)
    obs = torch.randint(0, 11, (3, 5, 7, 7, 3), device=device).float()
    state = net.initial_state(3, device)
    logits, values, new_state, mask = net(obs, state, return_mask=True)
    assert logits.shape == (3, 5, 7) and values.shape == (3, 5)
    assert set(new_state) == set(state) and new_state["h"].shape == (3, 64)
    assert (mask is None) == (memory == "lstm")
    (logits.sum() + values.sum()).backward()


def test_minigrid_actor_critic_rejects_other_views():
    with pytest.raises(ValueError, match=r"obs must have shape \(batch, time, \(7, 7, 3\)\)"):
        MiniGridActorCritic(7)(torch.zeros(2, 3, 9, 9, 3), MiniGridActorCritic(7).initial_state(2))
    with pytest.raises(ValueError, match="memory must be one of"):
        MiniGridActorCritic(7, memory="transformer")
