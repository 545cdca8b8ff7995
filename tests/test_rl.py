"""RIM as an RLlib model: the RLModule's forward, real PPO runs on both API stacks, the
evaluation tool, and a tiny MiniGrid study's parquet."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd

import pytest
import torch
from ray.rllib.core.columns import Columns

from analysis.activations import main as activations_main
from analysis.tables import build_table
from rim_rllib.actor_critic import MiniGridActorCritic
from rim_rllib.collapse import COLLAPSE_METRICS
from rim_rllib.rl import RIMActorCriticModule, RIMRecurrentModel, make_minigrid
from rim_rllib.rl.evaluate import evaluate, load_network, main as evaluate_main
from rim_rllib.rl.ppo import ppo_config, save_algorithm, set_dense_fraction
from rim_rllib.tune.minigrid import _network
from rim_rllib.tune.results import read_results
from rim_rllib.tune.study import run_study
from rim_rllib.tune.tasks import study_spec

OBS = gym.spaces.Box(0, 255, (7, 7, 3), np.float32)
FAST_PPO = dict(num_envs=2, rollout_length=32, minibatch_size=32, num_epochs=1, max_seq_len=8)


def module(**model_config):
    m = RIMActorCriticModule(observation_space=OBS, action_space=gym.spaces.Discrete(7),
                             model_config=dict(memory="rim", k=3) | model_config)
    return m.eval()


def batch(m, obs, state=None):
    if state is None:
        state = {k: torch.from_numpy(v).expand(obs.shape[0], -1)
                 for k, v in m.get_initial_state().items()}
    return {Columns.OBS: obs, Columns.STATE_IN: state}


def random_obs(b, t, seed=0):
    return torch.randint(0, 11, (b, t, 7, 7, 3), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("memory, cell, keys", [("rim", "lstm", {"h", "c"}),
                                                ("rim", "gru", {"h"}),
                                                ("lstm", "lstm", {"h", "c"})])
def test_module_forward_shapes(memory, cell, keys):
    m = module(memory=memory, cell=cell)
    assert set(m.get_initial_state()) == keys
    out = m.forward_train(batch(m, random_obs(5, 6)))
    assert out[Columns.ACTION_DIST_INPUTS].shape == (5, 6, 7)
    assert out[Columns.EMBEDDINGS].shape == (5, 6, 64)
    assert {k: v.shape for k, v in out[Columns.STATE_OUT].items()} == {k: (5, 64) for k in keys}
    values = m.compute_values(batch(m, random_obs(5, 6)), out[Columns.EMBEDDINGS])
    assert values.shape == (5, 6)


@pytest.mark.parametrize("stack", ["new", "classic"])
def test_padding_does_not_count_in_the_usage_statistics(stack):
    """RLlib pads sequences; the module's training forward tells the RIM which steps are
    real (the loss mask, or seq_lens on the classic stack)."""
    config = dict(memory="rim", k=2, balance_loss=1.0, input_dropout=0.0, comm_dropout=0.0)
    obs = random_obs(2, 6).float()
    if stack == "new":
        m = module(**config).train()
        loss_mask = torch.arange(6).expand(2, -1) < 4
        padded = m.forward_train(batch(m, obs) | {Columns.LOSS_MASK: loss_mask})["aux_loss"]
        real = m.forward_train(batch(m, obs[:, :4]))["aux_loss"]
    else:
        m = RIMRecurrentModel(OBS, gym.spaces.Discrete(7), 7, {"max_seq_len": 6}, "rim",
                              **config)
        state = [s.expand(2, -1) for s in m.get_initial_state()]
        m.forward_rnn(obs.flatten(2), state, torch.tensor([4, 4]))
        padded = m.custom_loss([torch.tensor(0.0)], {})[0]
        m.forward_rnn(obs[:, :4].flatten(2), state, torch.tensor([4, 4]))
        real = m.custom_loss([torch.tensor(0.0)], {})[0]
    torch.testing.assert_close(padded, real)


def test_state_carries_across_chunks():
    m = module()
    obs = random_obs(4, 10)
    whole = m.forward_inference(batch(m, obs))
    first = m.forward_inference(batch(m, obs[:, :4]))
    second = m.forward_inference(batch(m, obs[:, 4:], first[Columns.STATE_OUT]))
    logits = torch.cat([first[Columns.ACTION_DIST_INPUTS], second[Columns.ACTION_DIST_INPUTS]], 1)
    torch.testing.assert_close(logits, whole[Columns.ACTION_DIST_INPUTS])
    for key, value in whole[Columns.STATE_OUT].items():
        torch.testing.assert_close(second[Columns.STATE_OUT][key], value)


def test_padding_after_a_sequence_does_not_change_its_outputs():
    m = module()
    obs = random_obs(3, 8)
    padded = obs.clone()
    padded[:, 5:] = 0  # RLlib zero-pads sequences shorter than max_seq_len
    a = m.forward_train(batch(m, obs))[Columns.ACTION_DIST_INPUTS]
    b = m.forward_train(batch(m, padded))[Columns.ACTION_DIST_INPUTS]
    torch.testing.assert_close(a[:, :5], b[:, :5])


def test_model_config_typos_are_refused():
    with pytest.raises(TypeError, match="hiden_size"):
        module(hiden_size=3)


def test_bad_env_id_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown MiniGrid environment 'MiniGrid-Nope-v0'; "
                                         "available: .*MiniGrid-DoorKey-5x5-v0"):
        make_minigrid("MiniGrid-Nope-v0")
    with pytest.raises(ValueError, match=r"unknown MiniGrid env_config option\(s\) \['size'\]"):
        make_minigrid("MiniGrid-Empty-5x5-v0", {"size": 9})
    env = make_minigrid("MiniGrid-Empty-8x8-v0", {"max_steps": 7})
    assert env.observation_space == OBS and env.unwrapped.max_steps == 7


def test_evaluate_reports_returns_and_activation_rates(tmp_path):
    net = module(k=2).net
    result = evaluate(net, "MiniGrid-Empty-5x5-v0", episodes=3, render=True)
    assert len(result["returns"]) == 3 and 0 <= result["mean_return"] <= 1
    rates = result["activation_rate"]
    assert len(rates) == 4 and sum(rates) == pytest.approx(2.0)  # exactly Ka per step
    assert result["images"] and result["images"][0].ndim == 3


@pytest.mark.parametrize("stack", ["new", "classic"])
def test_ppo_trains_rim_on_minigrid(stack, tmp_path, ray_session, capsys, monkeypatch):
    algo = ppo_config("MiniGrid-Empty-5x5-v0", model={"memory": "rim", "k": 3}, stack=stack,
                      num_env_runners=0, seed=0, **FAST_PPO).build_algo()
    try:
        if stack == "new":
            net = algo.get_module().net
            assert isinstance(algo.get_module(), RIMActorCriticModule)
        else:
            assert isinstance(algo.get_policy().model, RIMRecurrentModel)
            net = algo.get_policy().model.net
        before = [p.detach().clone() for p in net.memory.parameters()]
        for _ in range(2):
            result = algo.train()
        sampled = (result["env_runners"].get("num_env_steps_sampled_lifetime")
                   or result["timesteps_total"])
        assert sampled >= 2 * 2 * 32
        assert any(not torch.equal(a, b) for a, b in zip(before, net.memory.parameters()))
        checkpoint = save_algorithm(algo, str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    loaded = load_network(checkpoint)
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    monkeypatch.chdir(tmp_path)  # a relative checkpoint path, as typed in a shell
    assert evaluate_main(["ckpt", "--env", "MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-6x6-v0",
                          "--episodes", "2", "--gif", "rollout.gif"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("MiniGrid-Empty-6x6-v0")  # the table, then the GIF line
    from PIL import Image
    with Image.open(tmp_path / "rollout.gif") as gif:
        assert lines[3].startswith("wrote rollout.gif") and f" in {gif.n_frames} frames" \
            in lines[3]


def test_minigrid_study_writes_train_and_transfer_rows(tmp_path, ray_session):
    spec = study_spec("minigrid-empty", "cpu", ks=[2], seeds=[0], name="tiny-minigrid")
    # Dense-to-sparse over all frames: the RIM trains with 4 then 3 active units, and is
    # evaluated with its Ka=2.
    spec.base_config |= dict(frames=128, eval_episodes=2, eval_envs=("MiniGrid-Empty-6x6-v0",),
                             ppo=dict(FAST_PPO), k_anneal=1.0)
    home_results = Path("~/ray_results").expanduser()
    before = set(home_results.iterdir()) if home_results.is_dir() else set()
    path = run_study(spec, storage=str(tmp_path))
    # The PPO algorithms built inside the trials log there, not in ~/ray_results.
    assert (set(home_results.iterdir()) if home_results.is_dir() else set()) == before
    df = read_results(path)
    assert set(df["status"]) == {"TERMINATED"} and set(df["task"]) == {"minigrid"}
    final = df[df["final"] & (df["metric"] == "return")]
    assert len(final) == 2 * 2  # (RIM Ka=2, LSTM) x (train env, transfer env)
    assert set(final["eval_on"]) == {"MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-6x6-v0"}
    assert set(final["train_on"]) == {"MiniGrid-Empty-5x5-v0"}
    assert (final["budget_unit"] == "frame").all() and (final["budget"] >= 128).all()
    curves = df[df["metric"] == "train_return"]
    assert set(curves["eval_on"]) == {"MiniGrid-Empty-5x5-v0"}
    # PPO's losses and the sampling speed, every iteration of both models.
    iterations = df.groupby("trial_id")["iteration"].max()
    for metric in ("train_policy_loss", "train_vf_loss", "train_entropy", "samples_per_s"):
        rows = df[df["metric"] == metric]
        assert rows.groupby("trial_id").size().to_dict() == iterations.to_dict(), metric
    assert (df[df["metric"] == "samples_per_s"]["value"] > 0).all()
    # The RIM's unit collapse in every evaluation environment, after the last iteration.
    collapse = df[df["final"] & df["metric"].isin(COLLAPSE_METRICS)]
    assert set(collapse["model"]) == {"rim"} and len(collapse) == 2 * len(COLLAPSE_METRICS)
    entropy = collapse[collapse["metric"] == "usage_entropy"]["value"]
    assert ((0 <= entropy) & (entropy <= 1)).all()
    assert "switch rate" in build_table(df).columns
    files = list((tmp_path / "tiny-minigrid").rglob("activations.parquet"))
    assert len(files) == 1  # the RIM trial
    counts = pd.read_parquet(files[0])
    assert {"key in view", "goal in view", "carrying key", "all"} <= set(counts["condition"])
    assert set(counts["eval_on"]) == {"MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-6x6-v0"}
    every_step = counts[counts["condition"] == "all"].groupby("eval_on")
    assert (every_step["active"].sum() == 2 * every_step["steps"].first()).all()
    assert activations_main([str(tmp_path / "tiny-minigrid")]) == 0
    assert (tmp_path / "tiny-minigrid" / "activations.png").is_file()


def test_the_evaluator_gives_a_trials_own_returns_by_default(tmp_path, ray_session, capsys):
    spec = study_spec("minigrid-empty", "cpu", ks=[2], seeds=[1], name="eval-minigrid")
    spec.base_config |= dict(frames=64, eval_episodes=3, eval_envs=("MiniGrid-Empty-6x6-v0",),
                             ppo=dict(FAST_PPO))
    spec.variants = [v for v in spec.variants if v["memory"] == "rim"]
    final = read_results(run_study(spec, storage=str(tmp_path)))
    final = final[final["final"] & (final["metric"] == "return")].set_index("eval_on")
    checkpoint = max((tmp_path / "eval-minigrid").glob("*/checkpoint_*"))
    capsys.readouterr()
    assert evaluate_main([str(checkpoint)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("evaluating as its trial did, where not overridden: 2 environments, "
                        "3 episodes each from seed 10001")
    printed = {line.split()[0]: float(line.split()[2]) for line in lines[2:4]}
    assert printed == pytest.approx(final["value"].to_dict(), abs=5e-4)
    assert evaluate_main([str(checkpoint), "--episodes", "1", "--env",
                          "MiniGrid-Empty-5x5-v0"]) == 0
    assert "1 environments, 1 episodes each" in capsys.readouterr().out


@pytest.mark.parametrize("stack", ["new", "classic"])
def test_ppo_has_the_reference_settings_and_no_kl_penalty(stack):
    config = ppo_config("MiniGrid-Empty-5x5-v0", {"memory": "rim", "k": 3}, stack=stack,
                        num_env_runners=4)
    config.validate()
    assert config.use_kl_loss is False and config.kl_coeff == 0.0
    assert (config.num_env_runners, config.num_envs_per_env_runner) == (4, 4)
    assert (config.lr, config.clip_param, config.entropy_coeff) == (1e-4, 0.2, 0.01)


def test_env_runner_counts_split_the_environments():
    from rim_rllib.rl.ppo import default_env_runners
    assert [default_env_runners(cpus) for cpus in (1, 2, 3, 4, 5, 9, 32)] == [0, 0, 2, 2, 4,
                                                                                8, 16]
    with pytest.raises(ValueError, match=r"num_env_runners=3 does not split num_envs=16 "
                       r"environments evenly; use one of \[0, 1, 2, 4, 8, 16\]"):
        ppo_config("MiniGrid-Empty-5x5-v0", num_env_runners=3)


def test_minigrid_checkpoint_interval_and_annealing_are_checked():
    from rim_rllib.tune.minigrid import resolve_config
    assert resolve_config({})["checkpoint_every"] == 10
    assert resolve_config({})["k_anneal"] == 0.0
    with pytest.raises(ValueError, match=r"config\['checkpoint_every'\] must be a positive"):
        resolve_config({"checkpoint_every": 0})
    with pytest.raises(ValueError, match=r"config\['k_anneal'\] must be the fraction of "
                       r"training frames in \[0, 1\].*got -0.5"):
        resolve_config({"k_anneal": -0.5})


@pytest.mark.parametrize("stack", ["new", "classic"])
def test_the_usage_floor_moves_in_ppo_updates_and_reaches_the_acting_network(stack,
                                                                             ray_session):
    algo = ppo_config("MiniGrid-Empty-5x5-v0", stack=stack, num_env_runners=0, seed=0,
                      model={"memory": "rim", "k": 1, "usage_floor": 0.2}, **FAST_PPO
                      ).build_algo()
    try:
        acting = _network(algo, stack)
        algo.train()
        learned = (_learner_network(algo) if stack == "new" else acting).memory.cells[0]
        assert learned.selection_bias.abs().sum() > 0
        assert torch.equal(acting.memory.cells[0].selection_bias, learned.selection_bias)
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", ["new", "classic"])
def test_ppo_carries_a_fatigued_rims_tiredness_as_state(stack, ray_session):
    """With fatigue, the tiredness is a third state entry (Kt values) that RLlib carries
    from step to step while sampling and into the training chunks, on both stacks."""
    m = module(k=1, fatigue=1.0)
    assert {k: v.shape for k, v in m.get_initial_state().items()} == {
        "h": (64,), "c": (64,), "tired": (4,)}
    out = m.forward_inference(batch(m, random_obs(5, 6)))
    assert out[Columns.STATE_OUT]["tired"].shape == (5, 4)
    assert out[Columns.STATE_OUT]["tired"].sum(-1).min() > 1  # Ka=1: 6 steps, decay 0.9
    algo = ppo_config("MiniGrid-Empty-5x5-v0", stack=stack, num_env_runners=0, seed=0,
                      model={"memory": "rim", "k": 1, "fatigue": 1.0}, **FAST_PPO
                      ).build_algo()
    try:
        result = algo.train()
        assert _network(algo, stack).state_keys == ("h", "c", "tired")
    finally:
        algo.stop()
    from rim_rllib.tune.minigrid import learner_metrics
    assert np.isfinite(learner_metrics(result)["train_policy_loss"])


def _learner_network(algo):
    return [r.get() for r in algo.learner_group.foreach_learner(
        lambda learner: learner.module["default_policy"].net)][0]


@pytest.mark.parametrize("stack", ["new", "classic"])
def test_dense_to_sparse_ppo_acts_with_the_units_it_trains(stack, ray_session):
    """set_dense_fraction reaches the network that acts (in eval mode) and the one the
    learner trains: at 1 a Ka=1 agent of 4 units uses all 4 in both, at 0 its one."""
    algo = ppo_config("MiniGrid-Empty-5x5-v0", model={"memory": "rim", "k": 1}, stack=stack,
                      num_env_runners=0, seed=0, **FAST_PPO).build_algo()
    try:
        acting = _network(algo, stack)
        # The classic stack learns in the local worker's policy.
        learning = _learner_network(algo) if stack == "new" else acting
        assert (learning is not acting) == (stack == "new")
        obs = random_obs(2, 5).float()
        for fraction, active in ((1.0, 4), (0.0, 1)):
            set_dense_fraction(algo, fraction)
            algo.train()  # samples and learns with the annealed units
            masks = [net.eval().embed(obs, net.initial_state(2), return_mask=True)[2]
                     for net in (acting, learning)]
            assert [set(m.sum(-1).unique().tolist()) for m in masks] == [{active}] * 2
    finally:
        algo.stop()


@pytest.mark.parametrize("stack", ["new", "classic"])
def test_the_balance_loss_joins_ppo_on_both_stacks(stack, ray_session):
    """With balance_loss=w the learner adds w x the RIM's load-balancing loss (in [1, Kt])
    and reports it; the selection's query maps get its gradient."""
    from rim_rllib.tune.minigrid import learner_metrics
    weight = 0.5
    algo = ppo_config("MiniGrid-Empty-5x5-v0", stack=stack, num_env_runners=0, seed=0,
                      model={"memory": "rim", "k": 1, "balance_loss": weight},
                      **FAST_PPO).build_algo()
    try:
        metrics = learner_metrics(algo.train())
    finally:
        algo.stop()
    assert weight * 1.0 <= metrics["train_balance_loss"] <= weight * 4
    net = MiniGridActorCritic(7, k=1, balance_loss=weight)
    *_, stats = net(torch.zeros(2, 3, 7, 7, 3), net.initial_state(2), return_stats=True)
    net.aux_loss(stats).backward()
    assert net.memory.cells[0].query.weight.grad.abs().sum() > 0
    assert MiniGridActorCritic(7).aux_loss(None) is None
    with pytest.raises(ValueError, match="balance_loss must be a weight >= 0 .*memory='lstm'"):
        MiniGridActorCritic(7, memory="lstm", balance_loss=0.1)
