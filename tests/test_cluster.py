"""cluster.yaml is a valid Ray cluster-launcher config, checked with Ray's own schema."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture
def config():
    return yaml.safe_load(CLUSTER.read_text())


def test_cluster_yaml_passes_rays_validation(config):
    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_has_autoscaling_gpu_workers_and_installs_the_lock(config):
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0 < workers["max_workers"] <= config["max_workers"]
    assert workers["node_config"]["InstanceType"].startswith(("g", "p"))  # a GPU family
    for commands in ("head_setup_commands", "worker_setup_commands"):
        setup = "\n".join(config[commands])
        assert "constraints.txt" in setup and '-e "$HOME/rim_rllib[cluster]"' in setup
    # The CPU-only head gets torch's CPU build; GPU workers the CUDA one.
    assert "whl/cpu" in "\n".join(config["head_setup_commands"])
    assert "nvidia-smi" in "\n".join(config["worker_setup_commands"])
    for node in config["available_node_types"].values():
        assert node["node_config"]["ImageId"].startswith("resolve:ssm:/aws/service/")
    for name in ("gpu_worker", "cpu_worker"):  # workers write to the S3 storage too
        node_config = config["available_node_types"][name]["node_config"]
        assert node_config["IamInstanceProfile"] == {"Name": "ray-autoscaler-v1"}
    assert config["file_mounts"]["/home/ubuntu/rim_rllib"] == "."


def test_validation_catches_a_bad_key(config):
    config["available_node_types"]["gpu_worker"]["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(config))
