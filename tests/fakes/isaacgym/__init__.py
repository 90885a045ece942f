"""Fake Isaac Gym Preview 4: only its import-order rule.

The real package loads native libraries that clash with torch's and refuses to load once torch is loaded
(``ImportError: PyTorch was imported before isaacgym modules.  Please import torch after isaacgym modules.``);
IsaacGymEnvs' README and ``train.py`` therefore ``import isaacgym`` first.
"""

import sys

if "torch" in sys.modules:
    raise ImportError("PyTorch was imported before isaacgym modules.  Please import torch after isaacgym modules.")
