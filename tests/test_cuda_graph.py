"""The CUDA-graphed training step (torch only): a replayed step trains exactly as the eager
step does, and a pack computes on the GPU what it computes on the CPU. Most of this needs
a CUDA device; run there with ``python -m pytest --noconftest tests/test_cuda_graph.py``
(the conftest's fixtures need Ray, which GPU-only machines may lack)."""

import copy
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from rim_rllib import compile_steps, pack
from rim_rllib.cuda_graph import GraphedStep, capturable_adam
from rim_rllib.models import SequenceClassifier
from rim_rllib.packing import optimise_members_

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SIZES = dict(hidden_size=8, num_units=4, input_key_size=8, input_query_size=8,
             input_value_size=8, comm_key_size=8, comm_query_size=8, comm_value_size=8,
             num_comm_heads=2, input_dropout=0.0, comm_dropout=0.0)


def classifiers(model: str, ks=(1, 2, 4), cell="lstm"):
    torch.manual_seed(0)
    return [SequenceClassifier(model, 1, 10, cell=cell, k=k, **SIZES) for k in ks]


def batches(members: int, count: int, device, batch: int = 6, steps: int = 12):
    gen = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 2, (members, batch, steps, 1), generator=gen).float().to(device),
             torch.randint(0, 10, (members, batch), generator=gen).to(device))
            for _ in range(count)]


def step(model, optimizer, members, x, y):
    logits = model(x)
    losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    losses = losses.view(members, -1).mean(1)
    optimise_members_(model, optimizer, losses, 1.0)
    return losses.detach()


def train(model, data, graphed: bool, lr_decay: bool = True):
    """Train on ``data`` (a scheduler halving lr every step when ``lr_decay``); return
    the losses of every step and the final parameters."""
    device = next(model.parameters()).device
    optimizer = capturable_adam(model.parameters(), 1e-2, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda n: 0.5 ** n if lr_decay else 1.0)
    members = data[0][1].shape[0]
    run = partial(step, model, optimizer, members)
    if graphed:
        run = GraphedStep(run, warmup=2)
    losses = []
    for x, y in data:
        losses.append(run(x, y).clone())
        scheduler.step()
    if graphed:
        assert run.captured
    return torch.stack(losses).cpu(), [p.detach().cpu() for p in model.parameters()]


def test_graphed_step_checks_its_warmup():
    with pytest.raises(ValueError, match=r"warmup must be an int >= 1 .*got 0"):
        GraphedStep(lambda: None, warmup=0)


def test_capturable_adam_is_plain_adam_off_cuda():
    optimizer = capturable_adam([torch.nn.Parameter(torch.zeros(2))], 1e-3,
                                torch.device("cpu"))
    group = optimizer.param_groups[0]
    assert group["lr"] == 1e-3 and not group["capturable"]


@needs_cuda
@pytest.mark.parametrize("model, cell, compiled", [("rim", "lstm", False),
                                                   ("rim", "gru", False),
                                                   ("rim", "lstm", True),
                                                   ("lstm", "lstm", False)])
def test_graphed_training_equals_eager_training(model, cell, compiled):
    """Same seed, dropout off: a pack trained with its step captured and replayed (lr
    changing every step) ends with the parameters eager training gives."""
    eager = pack(classifiers(model, cell=cell)).cuda()
    if compiled:
        compile_steps(eager)
    graphed = copy.deepcopy(eager)
    initial = [p.detach().cpu() for p in eager.parameters()]
    data = batches(3, 6, "cuda")
    losses_e, params_e = train(eager, data, graphed=False)
    losses_g, params_g = train(graphed, data, graphed=True)
    torch.testing.assert_close(losses_g, losses_e, rtol=1e-5, atol=1e-6)
    for p_g, p_e in zip(params_g, params_e):
        torch.testing.assert_close(p_g, p_e, rtol=1e-5, atol=1e-6)
    assert not all(torch.equal(p, q) for p, q in zip(params_e, initial))  # it trained


@needs_cuda
def test_graphed_replays_draw_new_dropout():
    """Dropout stays random per replayed step: two replays on the same batch differ."""
    torch.manual_seed(0)
    model = pack([SequenceClassifier("rim", 1, 10, k=2, **(SIZES | dict(input_dropout=0.5)))
                  for _ in range(2)]).cuda()

    @torch.no_grad()
    def forward(x):
        return model(x)

    run = GraphedStep(forward, warmup=1)
    x = batches(2, 1, "cuda")[0][0]
    run(x)  # warm-up
    first = run(x).clone()
    second = run(x).clone()
    assert run.captured and not torch.equal(first, second)


@needs_cuda
def test_graphed_step_refuses_a_new_shape():
    run = GraphedStep(lambda x: x * 2, warmup=1)
    x = torch.ones(3, device="cuda")
    run(x)
    run(x)
    with pytest.raises(ValueError, match="captured shapes"):
        run(torch.ones(4, device="cuda"))


@needs_cuda
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_pack_on_gpu_equals_pack_on_cpu(cell):
    """Outputs, masks and gradients of a pack (per-member Ka) agree across devices."""
    cpu = pack(classifiers("rim", ks=(1, 3, 4), cell=cell))
    gpu = copy.deepcopy(cpu).cuda()
    x = batches(3, 1, "cpu")[0][0]
    results = []
    for model, inputs in ((cpu, x), (gpu, x.cuda())):
        logits, mask = model(inputs, return_mask=True)
        logits.square().sum().backward()
        results.append((logits.cpu(), mask.cpu(), [p.grad.cpu() for p in model.parameters()]))
    (l_c, m_c, g_c), (l_g, m_g, g_g) = results
    assert torch.equal(m_c, m_g)
    torch.testing.assert_close(l_g, l_c, rtol=1e-4, atol=1e-5)
    for a, b in zip(g_g, g_c):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
