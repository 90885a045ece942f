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
        "hydra-core>=1.3,<1.5",
        "omegaconf>=2.3,<2.4",
        "tensorboard>=2.12",
        "tqdm>=4.60",
        "matplotlib>=3.7,<4",       # task pictures (MultiGoal, tasks/multigoal_plots.py), Agg canvas, headless
        "imageio[ffmpeg]>=2.30",    # videos (imageio-ffmpeg ships an ffmpeg binary)
    ],
    extras_require={
        # the embedded CPU backend (sim=mujoco): mujoco.batch needs mujoco 4 (Python >= 3.11); gymnasium ships the
        # classic MuJoCo MJCF files. An extra, not a core dependency, so the core package installs next to Isaac
        # Gym / Isaac Sim 2023 / Isaac Lab 2-3 without touching their pins (Isaac Lab 3.0 pins mujoco 3.x);
        # scripts/install_cpu.sh always installs it.
        "mujoco": ["mujoco>=4.0,<5", "gymnasium>=1.0,<2"],
        "test": ["pytest>=7", "pytest-xdist>=3", "matplotlib>=3.5"],  # matplotlib: python -m meow_isaac.compare plots
        "plot": ["matplotlib>=3.5"],
        "wandb": ["wandb>=0.16"],
        "export": ["onnx>=1.17", "onnxscript>=0.3,<1", "onnxruntime>=1.17"],  # torch.onnx.export(dynamo=True)
        "slurm": ["hydra-submitit-launcher>=1.2,<1.3", "submitit>=1.4,<2"],  # hydra/launcher=slurm
        # meow_isaac/rl_games_bridge.py (MEow inside an rl_games train.py). Spelled as setuptools writes it in the
        # metadata (`rl-games`): pip < 23.3 does not normalise a requested `.[rl_games]` and would install nothing.
        "rl-games": ["rl-games>=1.6,<1.7"],
        # sim=mjwarp: the embedded tasks on MuJoCo Warp (GPU physics without Isaac; meow_isaac/envs/mjwarp.py)
        # (the embedded backend's own packages included, so `.[mjwarp]` alone is enough)
        "mjwarp": ["mujoco>=4.0,<5", "gymnasium>=1.0,<2", "mujoco-warp>=4.0,<5", "warp-lang>=1.15,<2"],
    },
    entry_points={"console_scripts": ["meow-isaac=meow_isaac.runner:main"]},
)
