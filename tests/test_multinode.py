"""A study on a real multi-node Ray cluster on this machine: a head with no CPUs for trials
(as in cluster.yaml), a CPU node and a node declaring one GPU. The study runs in its own
process, as `--address` users run it, with storage given as a URI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rim_rllib.tune.results import read_results

ROOT = Path(__file__).resolve().parents[1]
STUDY = """
import json, sys
from rim_rllib.tune.mnist import MnistTrainable
from rim_rllib.tune.study import StudyInputError, StudySpec, execute_study
args = json.loads(sys.argv[1])
spec = StudySpec(
    name=args["name"], task="mnist", trainable=MnistTrainable,
    base_config=dict(data_dir=args["data"], train_size=7, eval_sizes=[9], batch_size=64,
                     hidden_size=8, input_key_size=8, input_query_size=8, input_value_size=8,
                     comm_key_size=8, comm_query_size=8, comm_value_size=8, num_comm_heads=2),
    variants=[dict(model="rim", num_units=4, k=2), dict(model="lstm", num_units=4)],
    seeds=[0], iterations=1, metric="accuracy")
try:
    outcome = execute_study(spec, address=args["address"], storage=args["storage"],
                            gpus_per_trial=args["gpus"])
except StudyInputError as err:
    sys.exit(f"error: {err}")
print("RESULTS", outcome.path, outcome.failures)
"""


# Its own process: ray.cluster_utils.Cluster resets the Ray client state of the process it
# runs in, which would cut this test process off the Ray session other tests share.
CLUSTER = """
import sys
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 0})
cluster.add_node(num_cpus=2)
cluster.add_node(num_cpus=2, num_gpus=1)
cluster.wait_for_nodes()
print(cluster.address, flush=True)
sys.stdin.read()  # until the test closes it
cluster.shutdown()
"""


@pytest.fixture(scope="module")
def cluster():
    process = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    address = process.stdout.readline().strip()
    assert address, "the cluster did not start"
    yield address
    process.stdin.close()
    process.wait(timeout=120)


def run(address: str, **args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", STUDY, json.dumps(dict(args, address=address))],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_a_local_storage_path_is_refused_on_a_multi_node_cluster(cluster, tmp_path, mnist_dir):
    done = run(cluster, name="refused", data=str(mnist_dir), storage=str(tmp_path / "here"),
               gpus=0)
    assert done.returncode == 1
    assert "a local path, but trials run on other nodes of this cluster (3 node(s))" \
        in done.stderr


def test_trials_ask_for_the_gpus_given_and_write_to_the_storage_uri(cluster, tmp_path,
                                                                      mnist_dir):
    storage = f"file://{tmp_path / 'shared'}"
    done = run(cluster, name="multi", data=str(mnist_dir), storage=storage, gpus=0.5)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resources per trial {'cpu': 1, 'gpu': 0.5}" in done.stdout
    results = read_results(f"{storage}/multi/results.parquet")
    assert set(results["status"]) == {"TERMINATED"}
    assert set(results["model"]) == {"rim", "lstm"}
    # Checkpoints landed in the storage given, not on the node that ran the trial.
    checkpoints = list((tmp_path / "shared" / "multi").rglob("checkpoint_*"))
    assert len(checkpoints) == 2
    # The fake GPU is not a CUDA device: the trials trained on CPU all the same.
    assert results["value"].notna().all()
