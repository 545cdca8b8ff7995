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
    setup = "\n".join(config["setup_commands"])
    assert "constraints.txt" in setup and "-e ~/rim_rllib" in setup
    assert config["file_mounts"]["/home/ubuntu/rim_rllib"] == "."


def test_validation_catches_a_bad_key(config):
    config["available_node_types"]["gpu_worker"]["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(config))
