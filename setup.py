"""meow-isaac: massively parallel MEow (Chao et al., NeurIPS 2024) for NVIDIA Isaac and MuJoCo."""

from setuptools import setup

setup(
    name="meow-isaac",
    version="0.1.0",
    description="Massively parallel MEow (energy-based normalizing flow MaxEnt RL) for Isaac and MuJoCo tasks",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.8",
    packages=["meow_isaac", "meow_isaac.envs", "meow_isaac.agents", "tasks", "meow_isaac.cfg"],
    package_dir={"meow_isaac.cfg": "cfg"},
    package_data={"tasks": ["assets/*.xml"], "meow_isaac.cfg": ["*.yaml", "task/*.yaml", "train/*.yaml",
                                                                "rl_games/*.yaml", "hydra/launcher/*.yaml"]},
    install_requires=[
        "torch>=2.0",               # permissive for GPU users; CI installs the CPU build torch==2.13.0 first
        "numpy>=1.23",
        # embedded CPU backend (mujoco.batch needs mujoco 4, which needs Python >= 3.11); the Isaac Gym (3.8) and
        # Isaac Sim 2023.1 (3.10) paths run without it
        "mujoco>=4.0,<5; python_version>='3.11'",
        "gymnasium>=1.0,<2; python_version>='3.11'",  # ships the classic MuJoCo MJCF files
        "hydra-core>=1.3,<1.5",
        "omegaconf>=2.3,<2.4",
        "tensorboard>=2.12",
        "tqdm>=4.60",
        "matplotlib>=3.7,<4",       # task pictures (MultiGoal, tasks/multigoal_plots.py), Agg canvas, headless
        "imageio[ffmpeg]>=2.30",    # videos (imageio-ffmpeg ships an ffmpeg binary)
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "matplotlib>=3.5"],  # matplotlib: python -m meow_isaac.compare plots
        "plot": ["matplotlib>=3.5"],
        "wandb": ["wandb>=0.16"],
        "export": ["onnx>=1.17", "onnxscript>=0.3,<1", "onnxruntime>=1.17"],  # torch.onnx.export(dynamo=True)
        "slurm": ["hydra-submitit-launcher>=1.2,<1.3", "submitit>=1.4,<2"],  # hydra/launcher=slurm
        "rl_games": ["rl-games>=1.6"],  # meow_isaac/rl_games_bridge.py (MEow inside an rl_games train.py)
    },
    entry_points={"console_scripts": ["meow-isaac=meow_isaac.runner:main"]},
)
