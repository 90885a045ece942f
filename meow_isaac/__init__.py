"""meow-isaac: massively parallel MEow (Chao et al., NeurIPS 2024, arXiv:2405.13629) for Isaac and MuJoCo."""

__version__ = "0.1.0"
