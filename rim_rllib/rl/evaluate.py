"""Evaluate a trained MiniGrid agent (no training) on any MiniGrid environments.

    python -m rim_rllib.rl.evaluate CHECKPOINT            # as its trial evaluated it
    python -m rim_rllib.rl.evaluate CHECKPOINT --env MiniGrid-Empty-5x5-v0 \\
        MiniGrid-Empty-16x16-v0 --episodes 100 [--gif rollout.gif]

A study trial's checkpoint is evaluated by default as the trial evaluated its final
policy (its environments, episode count and environment seeds, from the trial's
``params.json``), so that its reported returns come back; the options override that.
Episodes are reproducible: environment seeds ``seed, seed+1, ...`` and actions sampled
from a generator seeded with ``seed``.

CHECKPOINT is an RLlib algorithm checkpoint directory, relative or absolute, of either API
stack: what the MiniGrid Tune trainable writes (a study's are under
``<storage>/<study>/<trial>/checkpoint_*``) and what
``rim_rllib.rl.ppo.save_algorithm(algo, directory)`` writes (``algo.save_to_path`` on the
current stack, ``algo.save`` on the classic one, whose ``save_to_path`` is not supported).
Prints mean return ± 95% CI per environment and, for a RIM, each unit's activation rate.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from minigrid.core.constants import OBJECT_TO_IDX, STATE_TO_IDX

from rim_rllib.actor_critic import MiniGridActorCritic
from rim_rllib.cli import HelpFormatter, int_at_least
from rim_rllib.stats import ci95_halfwidth
from rim_rllib.rl.envs import check_env_id, make_minigrid


#: A trial evaluates with environment seeds from this plus its own seed: episodes it never
#: trained on, the same for every model of that seed.
EVAL_SEED_OFFSET = 10_000

# What the agent sees, for the activation analysis: object types in its 7x7 view.
VIEW_OBJECTS = ("key", "door", "goal", "ball", "box", "lava")


def view_conditions(obs: np.ndarray, carrying) -> dict[str, bool]:
    """Conditions of one step: each object type in view, carrying a key, an open door in
    view. ``obs`` is the (7, 7, 3) view (object, colour, state); ``carrying`` the env's."""
    objects, states = obs[..., 0], obs[..., 2]
    seen = {f"{name} in view": bool((objects == OBJECT_TO_IDX[name]).any())
            for name in VIEW_OBJECTS}
    seen["carrying key"] = carrying is not None and carrying.type == "key"
    seen["open door in view"] = bool(((objects == OBJECT_TO_IDX["door"])
                                      & (states == STATE_TO_IDX["open"])).any())
    return seen


@torch.no_grad()
def evaluate(net: MiniGridActorCritic, env_id: str, episodes: int = 100, seed: int = 0,
             greedy: bool = False, render: bool = False) -> dict:
    """Run ``episodes`` episodes of ``env_id`` (seeds ``seed, seed+1, ...``) with ``net``,
    its actions sampled from a generator seeded with ``seed`` (argmax with ``greedy``).

    Returns ``returns`` (per episode), ``mean_return``, ``ci95`` (half-width),
    ``frames`` (environment steps), ``activation_rate`` (per unit, RIM only, else
    ``None``), for a RIM the per-step ``masks`` (frames, Kt) and ``conditions`` (name ->
    (frames,) bools, see :func:`view_conditions`), and with ``render`` the first episode's
    RGB ``images``.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_minigrid(env_id, {"render_mode": "rgb_array"} if render else None)
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    returns, masks, conditions, images, frames = [], [], [], [], 0
    sampler = torch.Generator().manual_seed(seed)
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        state = net.initial_state(1, device)
        total, done = 0.0, False
        while not done:
            if render and episode == 0:
                images.append(env.render())
            x = torch.as_tensor(obs, device=device)[None, None]
            logits, _, state, mask = net(x, state, return_mask=True)
            if mask is not None:
                masks.append(mask[0, 0].cpu())
                conditions.append(view_conditions(obs, env.unwrapped.carrying))
            probs = torch.softmax(logits[0, 0].float(), -1).cpu()
            action = int(probs.argmax() if greedy
                         else torch.multinomial(probs, 1, generator=sampler))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            frames += 1
            done = terminated or truncated
        if render and episode == 0:
            images.append(env.render())  # where the episode ended
        returns.append(total)
    env.close()
    net.train(was_training)
    returns_arr = np.asarray(returns)
    ci = float(ci95_halfwidth(returns_arr.std(ddof=1) if episodes > 1 else 0.0, episodes))
    result = dict(returns=returns, mean_return=float(returns_arr.mean()), ci95=ci,
                  frames=frames, activation_rate=None, images=images)
    if masks:
        mask_array = torch.stack(masks).numpy()
        result.update(activation_rate=mask_array.mean(0).tolist(), masks=mask_array,
                      conditions={name: np.array([c[name] for c in conditions])
                                  for name in conditions[0]})
    return result


def trial_config(checkpoint: str | Path) -> dict | None:
    """How the study trial that wrote ``checkpoint`` evaluated (``env``, ``eval_envs``,
    ``eval_episodes``, ``seed``, from its ``params.json`` in the trial directory above
    it), or ``None`` for a checkpoint of one's own."""
    params = Path(checkpoint).resolve().parent / "params.json"
    if not params.is_file():
        return None
    config = json.loads(params.read_text())
    config |= config.pop("variant", {})  # a study's grid point rides in "variant"
    keys = ("env", "eval_envs", "eval_episodes", "seed")
    return {key: config[key] for key in keys} if all(k in config for k in keys) else None


def load_network(checkpoint: str | Path) -> MiniGridActorCritic:
    """The agent network of an RLlib algorithm checkpoint (current or classic stack)."""
    checkpoint = Path(checkpoint).resolve()  # RLlib reads a relative path as a bad URI
    module_dir = checkpoint / "learner_group" / "learner" / "rl_module" / "default_policy"
    policy_dir = checkpoint / "policies" / "default_policy"
    if module_dir.is_dir():
        from ray.rllib.core.rl_module.rl_module import RLModule
        return RLModule.from_checkpoint(module_dir).net
    if policy_dir.is_dir():
        from ray.rllib.policy.policy import Policy
        return Policy.from_checkpoint(policy_dir).model.net
    raise FileNotFoundError(f"{checkpoint} is not an RLlib algorithm checkpoint (no "
                            "learner_group/.../default_policy nor policies/default_policy)")


def save_gif(images: list, path: str | Path, fps: int = 8) -> int:
    """Write ``images`` as an animated GIF; returns its frame count (Pillow merges
    identical consecutive images into one longer frame: an agent bumping into a wall)."""
    from PIL import Image
    frames = [Image.fromarray(image) for image in images]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=1000 // fps,
                   loop=0)
    with Image.open(path) as written:
        return written.n_frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("checkpoint", help="an RLlib algorithm checkpoint directory")
    parser.add_argument("--env", nargs="+", default=None,
                        help="MiniGrid environment ids (default: the trial's training and "
                             "evaluation environments)")
    parser.add_argument("--episodes", type=int_at_least(1), default=None,
                        help="episodes per environment (default: the trial's "
                             "eval_episodes, else 100)")
    parser.add_argument("--seed", type=int_at_least(0), default=None,
                        help="the first episode's environment seed, then +1 per episode "
                             f"(default: the trial's, {EVAL_SEED_OFFSET} + its seed, else 0)")
    parser.add_argument("--greedy", action="store_true", help="argmax actions, not sampled")
    parser.add_argument("--gif", default=None, help="save the first episode of the first "
                                                    "environment as this GIF")
    args = parser.parse_args(argv)
    trial = trial_config(args.checkpoint)
    if args.env is None and trial is None:
        parser.exit(2, f"evaluate: {args.checkpoint} has no trial config beside it "
                       "(params.json): name the environments with --env\n")
    if trial is not None:
        args.env = args.env or list(dict.fromkeys((trial["env"], *trial["eval_envs"])))
        args.episodes = args.episodes or trial["eval_episodes"]
        args.seed = EVAL_SEED_OFFSET + trial["seed"] if args.seed is None else args.seed
        print(f"evaluating as its trial did, where not overridden: {len(args.env)} "
              f"environments, {args.episodes} episodes each from seed {args.seed}")
    args.episodes = args.episodes or 100
    args.seed = args.seed or 0
    try:
        for env_id in args.env:
            check_env_id(env_id)
        import rim_rllib.rl  # noqa: F401  (the classes a checkpoint refers to)
        net = load_network(args.checkpoint)
    except (ValueError, FileNotFoundError) as err:
        print(f"evaluate: {err}", file=sys.stderr)
        return 2
    print(f"{'environment':32} {'episodes':>8} {'mean return':>12} {'± 95% CI':>9}  "
          "unit activation rates")
    images = []  # of the first environment's first episode, with --gif
    for i, env_id in enumerate(args.env):
        result = evaluate(net, env_id, args.episodes, args.seed, args.greedy,
                          render=bool(args.gif) and i == 0)
        rates = ("" if result["activation_rate"] is None else
                 " ".join(f"{r:.2f}" for r in result["activation_rate"]))
        print(f"{env_id:32} {args.episodes:8d} {result['mean_return']:12.3f} "
              f"{result['ci95']:9.3f}  {rates}")
        images = images or result["images"]
    if args.gif:
        frames = save_gif(images, args.gif)
        print(f"wrote {args.gif}: the first episode of {args.env[0]}, {len(images) - 1} "
              f"steps in {frames} frames (identical consecutive frames merged)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
