import math

import pytest
import torch

from rim_rllib.tune.mnist import MnistTrainable, resolve_config

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
                                             lr=1e-2))
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


def test_checkpoint_restore_continues_where_it_stopped(mnist_dir, tmp_path):
    trainable = MnistTrainable(config=config(mnist_dir))
    trainable.train()
    checkpoint = trainable.save(str(tmp_path / "ckpt"))
    expected = trainable.train()

    restored = MnistTrainable(config=config(mnist_dir))
    restored.restore(checkpoint)
    resumed = restored.train()
    assert resumed["epoch"] == 2
    for key in ("train_loss", "train_accuracy", "accuracy_7", "accuracy_9", "accuracy_12"):
        assert resumed[key] == expected[key], key


def test_nan_loss_ends_the_trial_with_a_clear_error(mnist_dir, monkeypatch):
    trainable = MnistTrainable(config=config(mnist_dir))
    monkeypatch.setattr(trainable.model.classifier, "forward",
                        lambda x: torch.full((x.shape[0], 10), float("nan")))
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 1, batch 0 .*lr="):
        trainable.step()


def test_bad_config_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown MNIST trainable config keys \['hiden_size'\]"):
        resolve_config({"hiden_size": 3})
    with pytest.raises(ValueError, match=r"config\['num_units'\] must be a positive int"):
        resolve_config({"num_units": 0})
