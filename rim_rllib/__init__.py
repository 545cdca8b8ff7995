"""rim_rllib: Recurrent Independent Mechanisms in PyTorch, for Ray Tune and RLlib.

The core (this package's top level) imports torch only; the Ray integrations live in
submodules that import it.
"""

from rim_rllib.group import GroupGRUCell, GroupLinear, GroupLSTMCell
import rim_rllib.actor_critic  # noqa: F401  (these register their task networks with pack)
import rim_rllib.models  # noqa: F401
from rim_rllib.packing import PackedRIM, pack
from rim_rllib.rim import RIM, RIMCell, compile_steps, set_dense_fraction_
from rim_rllib.selection import Selection, SelectionStats

__all__ = ["GroupLinear", "GroupLSTMCell", "GroupGRUCell", "RIMCell", "RIM", "PackedRIM",
           "Selection", "SelectionStats", "pack", "compile_steps", "set_dense_fraction_"]
__version__ = "0.1.0"
