"""The main job: a Tune sweep over Ka on sequential MNIST (arrives with the studies issue)."""

import sys

if __name__ == "__main__":
    print("studies/ka_sweep.py: the Ka sweep is not implemented yet; the RIM module is "
          "(see README, 'Quick start').", file=sys.stderr)
    sys.exit(0)
