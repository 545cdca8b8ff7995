import json
import math
from pathlib import Path

import pytest
import torch

from rim_rllib.tune.mnist import MnistTrainable, resolve_config
from rim_rllib.tune.sequence import lr_factor

SMALL_RIM = dict(hidden_size=8, input_key_size=8, input_query_size=8, input_value_size=8,
                 comm_key_size=8, comm_query_size=8, comm_value_size=8, num_comm_heads=2)


def config(mnist_dir, **overrides):
    return dict(SMALL_RIM, data_dir=str(mnist_dir), num_units=4, k=2, train_size=7,
                eval_sizes=[9, 12], batch_size=32, lr=3e-3, seed=0) | overrides


@pytest.mark.parametrize("model", ["rim", "lstm"])
def test_one_epoch_reports_every_metric(mnist_dir, model):
    trainable = MnistTrainable(config=config(mnist_dir, model=model))
    result = trainable.train()
    for key in ("train_loss", "train_accuracy", "accuracy", "accuracy_7", "accuracy_9",
                "accuracy_12", "samples_per_s", "epoch", "eval_seconds"):
        assert key in result, key
    assert result["epoch"] == 1 and result["training_iteration"] == 1
    assert math.isfinite(result["train_loss"]) and result["samples_per_s"] > 0
    for key in ("train_accuracy", "accuracy_7", "accuracy_9", "accuracy_12"):
        assert 0.0 <= result[key] <= 1.0
    assert result["accuracy"] == result["accuracy_7"]
    trainable.stop()


def test_learns_the_synthetic_task(mnist_dir):
    trainable = MnistTrainable(config=config(mnist_dir, model="lstm", train_size=14,
                                             lr=1e-2, grad_clip=None))
    results = [trainable.train() for _ in range(5)]
    assert results[-1]["train_loss"] < results[0]["train_loss"]
    assert results[-1]["accuracy"] > 0.3  # chance is 0.1
    trainable.stop()


def test_same_seed_same_numbers(mnist_dir):
    first = MnistTrainable(config=config(mnist_dir)).train()
    second = MnistTrainable(config=config(mnist_dir)).train()
    for key in ("train_loss", "train_accuracy", "accuracy_9", "accuracy_12"):
        assert first[key] == second[key]
    other = MnistTrainable(config=config(mnist_dir, seed=1)).train()
    assert other["train_loss"] != first["train_loss"]


@pytest.mark.parametrize("overrides", [
    dict(seed=0), dict(seed=[0, 1]),
    dict(seed=0, lr_schedule="cosine", warmup=0.3, epochs=3, compile=True)],
    ids=["one model", "pack of two", "cosine lr, compiled"])
def test_checkpoint_restore_continues_where_it_stopped(mnist_dir, tmp_path, overrides):
    trainable = MnistTrainable(config=config(mnist_dir, **overrides))
    trainable.train()
    checkpoint = trainable.save(str(tmp_path / "ckpt"))
    expected = trainable.train()

    restored = MnistTrainable(config=config(mnist_dir, **overrides))
    restored.restore(checkpoint)
    resumed = restored.train()
    assert resumed["epoch"] == 2
    keys = [key for key in expected if key.split("/")[-1] in (
        "train_loss", "train_accuracy", "accuracy_7", "accuracy_9", "accuracy_12")]
    assert len(keys) == 5 * (1 + len(restored.members))  # the means and every member's
    for key in keys + ["lr"]:
        assert resumed[key] == expected[key], key


def test_nan_loss_ends_the_trial_naming_the_member(mnist_dir, monkeypatch):
    trainable = MnistTrainable(config=config(mnist_dir, seed=[3, 4]))
    forward = trainable.model.classifier.forward

    def poisoned(x):  # member 1's logits become nan
        out = forward(x)                                                   # (B, M, 10)
        return torch.cat([out[:, :1], torch.full_like(out[:, 1:], float("nan"))], dim=1)

    monkeypatch.setattr(trainable.model.classifier, "forward", poisoned)
    # On CUDA the flag is read every NAN_CHECK_EVERY batches (here: after the last of 8).
    where = "batches 0-7" if torch.cuda.is_available() else "batch 0"
    with pytest.raises(FloatingPointError, match=rf"loss is nan at epoch 1, {where} for "
                       r"member 1 \(model=rim, Kt=4, Ka=2, seed=4, lr=0.003\)"):
        trainable.step()


@pytest.mark.parametrize("model", ["rim", "lstm"])
def test_a_pack_trains_each_member_as_if_alone(mnist_dir, model):
    """Packed members (own init, data order, clipping and Adam state) follow the same
    trajectory as single-model trials with their seeds."""
    no_dropout = dict(input_dropout=0.0, comm_dropout=0.0, grad_clip=0.05)
    packed = MnistTrainable(config=config(mnist_dir, model=model, seed=[0, 1], **no_dropout))
    alone = [MnistTrainable(config=config(mnist_dir, model=model, seed=s, **no_dropout))
             for s in (0, 1)]
    for _ in range(2):
        result = packed.train()
        for member, trainable in enumerate(alone):
            single = trainable.train()
            for key in ("train_loss", "accuracy_7", "accuracy_9", "accuracy_12"):
                assert result[f"m{member}/{key}"] == pytest.approx(single[key], abs=1e-5), key
    assert result["accuracy"] == pytest.approx(
        (result["m0/accuracy_7"] + result["m1/accuracy_7"]) / 2)
    for member, trainable in enumerate(alone):
        unpacked = packed.model.unpack()[member]
        for (name, a), (_, b) in zip(unpacked.named_parameters(),
                                     trainable.model.unpack()[0].named_parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_members_are_every_ka_and_seed(mnist_dir):
    trainable = MnistTrainable(config=config(mnist_dir, k=[1, 3], seed=[5, 6]))
    assert trainable.members == [{"k": 1, "seed": 5}, {"k": 1, "seed": 6},
                                 {"k": 3, "seed": 5}, {"k": 3, "seed": 6}]
    assert trainable.model.memory.ks == (1, 1, 3, 3)
    result = trainable.train()
    assert {f"m{i}/accuracy_9" for i in range(4)} <= set(result)
    assert result["samples_per_s"] > 0


def test_bad_config_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown mnist trainable config keys \['hiden_size'\]"):
        resolve_config({"hiden_size": 3})
    with pytest.raises(ValueError, match=r"config\['num_units'\] must be a positive int"):
        resolve_config({"num_units": 0})
    with pytest.raises(ValueError, match=r"config\['seed'\] must be an int >= 0 or a "
                       r"non-empty list of them, got \[0, -1\]"):
        resolve_config({"seed": [0, -1]})
    with pytest.raises(ValueError, match=r"config\['grad_clip'\] must be a positive finite "
                       r"number or None, got -1"):
        resolve_config({"grad_clip": -1})
    with pytest.raises(ValueError, match=r"config\['lr_schedule'\] must be one of "
                       r"\['constant', 'cosine'\], got 'cosin'"):
        resolve_config({"lr_schedule": "cosin"})
    with pytest.raises(ValueError, match=r"config\['lr_schedule'\]='cosine' decays over "
                       r"config\['epochs'\] \(set by the study runner\), got epochs=None"):
        resolve_config({"lr_schedule": "cosine"})
    with pytest.raises(ValueError, match=r"config\['warmup'\] must be the fraction"):
        resolve_config({"warmup": 1.5})
    with pytest.raises(ValueError, match=r"config\['compile'\] must be True or False"):
        resolve_config({"compile": "yes"})


def test_lr_warms_up_then_decays_to_zero_over_the_epochs():
    steps = [lr_factor(i, "cosine", total=100, warmup=10) for i in range(100)]
    assert steps[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert steps[10] == 1.0
    assert all(a > b for a, b in zip(steps[10:], steps[11:]))  # decreasing after warm-up
    assert steps[55] == pytest.approx(0.5)
    assert lr_factor(100, "cosine", total=100, warmup=10) == pytest.approx(0.0)
    assert [lr_factor(i, "constant", total=100, warmup=2) for i in (0, 1, 2, 99)] == [
        0.5, 1.0, 1.0, 1.0]


def test_cosine_schedule_reaches_zero_at_the_last_epoch(mnist_dir):
    trainable = MnistTrainable(config=config(mnist_dir, model="lstm", lr_schedule="cosine",
                                             epochs=2))
    lrs = [trainable.train()["lr"] for _ in range(2)]
    assert 0 < lrs[0] < 3e-3 and lrs[1] == pytest.approx(0.0, abs=1e-12)
    assert MnistTrainable(config=config(mnist_dir, model="lstm")).train()["lr"] == 3e-3


def test_transfer_sizes_are_evaluated_every_n_epochs_and_at_the_end(mnist_dir):
    trainable = MnistTrainable(config=config(mnist_dir, model="lstm", transfer_eval_every=2,
                                             epochs=3))
    reported = [trainable.train() for _ in range(3)]
    assert [("accuracy_9" in r, "accuracy_7" in r) for r in reported] == [
        (False, True), (True, True), (True, True)]
    trainable.stop()


def test_rim_trials_report_unit_collapse_at_the_training_size(mnist_dir):
    rim = MnistTrainable(config=config(mnist_dir, k=[1, 4], seed=[0])).train()
    for i, k in enumerate((1, 4)):
        assert 0 <= rim[f"m{i}/usage_entropy_7"] <= 1
        assert 0 <= rim[f"m{i}/switch_rate_7"] <= 1
        assert 1 <= rim[f"m{i}/distinct_sets_7"]
        assert 0 <= rim[f"m{i}/min_unit_rate_7"] <= rim[f"m{i}/max_unit_rate_7"] <= 1
    # Ka = Kt = 4: every unit at every step, one active set, no switch
    assert (rim["m1/switch_rate_7"], rim["m1/distinct_sets_7"], rim["m1/min_unit_rate_7"],
            rim["m1/usage_entropy_7"]) == (0.0, 1.0, 1.0, pytest.approx(1.0))
    assert "usage_entropy_9" not in rim  # the training size only
    lstm = MnistTrainable(config=config(mnist_dir, model="lstm")).train()
    assert not any("entropy" in key or "switch" in key for key in lstm)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphed_trainable_trains_as_the_eager_one(mnist_dir):
    """On CUDA the captured training step (a pack of two, cosine lr; 256 images = 8 full
    batches, so none is dropped) reports the eager step's numbers and ends with its
    parameters."""
    cfg = config(mnist_dir, seed=[0, 1], lr_schedule="cosine", warmup=0.2, epochs=2)
    results, params = [], []
    for graph in (False, True):
        trainable = MnistTrainable(config=cfg | dict(cuda_graph=graph))
        results.append([trainable.train() for _ in range(2)])
        params.append([p.detach().cpu() for p in trainable.model.parameters()])
        assert (trainable.graphed_step is not None and trainable.graphed_step.captured) == graph
    for eager, graphed in zip(*results):
        for key in ("m0/train_loss", "m1/train_loss", "accuracy_7", "accuracy_12", "lr"):
            assert graphed[key] == pytest.approx(eager[key], rel=1e-5, abs=1e-6), key
    for p_graphed, p_eager in zip(*params[::-1]):
        torch.testing.assert_close(p_graphed, p_eager, rtol=1e-5, atol=1e-6)


def test_balance_loss_weight_trains_the_rims_with_it(mnist_dir):
    """balance_loss=0 is the default, bit for bit; a weight adds the loss (reported as
    train_balance_loss) and changes training; a bad weight is named."""
    default = MnistTrainable(config=config(mnist_dir)).train()
    zero = MnistTrainable(config=config(mnist_dir, balance_loss=0.0)).train()
    on = MnistTrainable(config=config(mnist_dir, balance_loss=1.0)).train()
    assert zero["train_loss"] == default["train_loss"] and "train_balance_loss" not in zero
    # About 1 unless usage follows the softmax shares (up to Kt=4 when one unit takes all);
    # it dips under 1 where they disagree, as at the zero pixels' ties of the paper's rule.
    assert 0.9 <= on["train_balance_loss"] <= 4.0
    assert on["train_loss"] != default["train_loss"]
    with pytest.raises(ValueError, match=r"config\['balance_loss'\] must be a finite number "
                       r">= 0, got -1"):
        resolve_config({"balance_loss": -1})


def test_a_validation_split_is_held_out_and_evaluated_every_epoch(mnist_dir):
    trainable = MnistTrainable(config=config(mnist_dir, validation=56, transfer_eval_every=5))
    result = trainable.train()
    assert trainable.num_train == 256 - 56 and len(trainable.eval_sets["val"][1]) == 56
    assert 0 <= result["accuracy_val"] <= 1 and "m0/accuracy_val" in result
    assert "accuracy_9" not in result  # transfer sizes wait for their epoch
    # The same held-out images in every trial, whatever its seed.
    other = MnistTrainable(config=config(mnist_dir, validation=56, seed=3))
    assert torch.equal(other.eval_sets["val"][0], trainable.eval_sets["val"][0])
    with pytest.raises(ValueError, match=r"config\['validation'\] must be an int >= 0"):
        resolve_config({"validation": -1})


def test_asha_studies_select_on_the_validation_split():
    from rim_rllib.tune.tasks import study_spec
    spec = study_spec("mnist", asha=True)
    assert spec.metric == "accuracy_val" and spec.base_config["validation"] == 1000
    assert study_spec("mnist").metric == "accuracy"
    assert "validation" not in study_spec("mnist").base_config


def test_a_checkpoint_from_a_gpu_trial_continues_on_cpu(mnist_dir, tmp_path):
    """A GPU trial's checkpoint holds its CUDA RNG state too; restored where there is no
    GPU (a retry on another node), it continues as a CPU checkpoint would."""
    trainable = MnistTrainable(config=config(mnist_dir))
    trainable.train()
    checkpoint = trainable.save(str(tmp_path / "ckpt"))
    expected = trainable.train()
    state_file = next(Path(checkpoint.checkpoint.path).rglob("state.pt"))
    state = torch.load(state_file, weights_only=True)
    state["cuda_rng"] = torch.zeros(16, dtype=torch.uint8)  # as a CUDA trial saves it
    torch.save(state, state_file)
    restored = MnistTrainable(config=config(mnist_dir))
    restored.restore(checkpoint)
    resumed = restored.train()
    assert resumed["epoch"] == 2 and resumed["train_loss"] == expected["train_loss"]


@pytest.mark.parametrize("model", ["rim", "lstm"])
def test_onehot_input_encoding_feeds_each_pixel_as_two_features(mnist_dir, tmp_path, model):
    """input_encoding="onehot": a black pixel is (1, 0), no longer the RIM's null input
    (0); the RIM and the LSTM read the same two features; a checkpoint evaluates with the
    trial's encoding."""
    from rim_rllib.tune.evaluate_mnist import accuracy_table, load_trial
    from rim_rllib.tune.mnist import encode_pixels
    pixels = torch.tensor([[0, 1, 1, 0]], dtype=torch.uint8)
    assert encode_pixels(pixels, "raw").tolist() == [[[0.0], [1.0], [1.0], [0.0]]]
    assert encode_pixels(pixels, "onehot").tolist() == [[[1.0, 0.0], [0.0, 1.0],
                                                         [0.0, 1.0], [1.0, 0.0]]]
    trainable = MnistTrainable(config=config(mnist_dir, model=model,
                                             input_encoding="onehot"))
    memory = trainable.model.memory
    assert (memory.input_size if model == "rim" else memory.weight_ih_l0.shape[-1]) == 2
    result = trainable.train()
    assert 0.0 <= result["accuracy"] <= 1.0
    checkpoint = tmp_path / "trial" / "checkpoint_000001"
    checkpoint.mkdir(parents=True)
    trainable.save_checkpoint(str(checkpoint))
    (tmp_path / "trial" / "params.json").write_text(
        json.dumps(config(mnist_dir, model=model, input_encoding="onehot")))
    loaded, cfg, members = load_trial(checkpoint)
    table = accuracy_table(loaded, cfg, members, [7])
    assert table["7*"].iloc[0] == pytest.approx(100 * result["accuracy"], abs=0.01)
    trainable.stop()
    with pytest.raises(ValueError, match=r"config\['input_encoding'\] must be one of "
                                         r"\['raw', 'onehot'\].*got 'embedding'"):
        resolve_config(config(mnist_dir, input_encoding="embedding"))
