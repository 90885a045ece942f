"""Physics smoke run of one REAL Isaac Lab 3 task on a local asset tree; prints one JSON line (used by
tests/test_isaaclab_assets.py, which runs it in a subprocess with the Isaac Lab venv's Python).

    ISAACSIM_ASSET_ROOT=TREE python tests/isaaclab3_smoke.py TASK_ID NUM_ENVS STEPS SEED [EPISODE_LENGTH_S]

Random uniform actions in [-1, 1] for STEPS env steps on device cpu. Reported (SI units, world frame minus the
env origin): ``root_z`` of the articulation ``robot`` per step (min / max / mean over envs and steps, and the
mean at the first step), ``max_abs_joint_vel`` [rad/s or m/s], ``max_abs_root_lin_vel`` [m/s], ``nonfinite``
(any NaN/inf in obs or reward), ``terminated`` / ``truncated`` counts, ``episode_lengths`` of finished episodes
(env steps), ``masses`` (robot body masses [kg] as Isaac Lab sees them), ``joint_names`` / ``body_names``,
``joint_stiffness`` / ``joint_damping`` / ``joint_armature`` (env 0, as Isaac Lab resolved them), and
per task extras (``object_z`` for the Allegro cube, ``cabinet_joint_pos_max``: max |q| per cabinet joint).
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    task, num_envs, steps, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    episode_length_s = float(sys.argv[5]) if len(sys.argv) > 5 else None
    if not os.environ.get("ISAACSIM_ASSET_ROOT"):
        print("ISAACSIM_ASSET_ROOT is not set", file=sys.stderr)
        return 2
    import gymnasium as gym
    import torch

    import isaaclab_tasks  # noqa: F401  (registers the gym ids)
    from isaaclab.app import launch_simulation
    from isaaclab_tasks.utils import parse_env_cfg

    torch.manual_seed(seed)
    env_cfg = parse_env_cfg(task, device="cpu", num_envs=num_envs)
    env_cfg.seed = seed
    if episode_length_s is not None:
        env_cfg.episode_length_s = episode_length_s
    t0 = time.time()
    with launch_simulation(env_cfg, {"headless": True, "device": "cpu"}):
        env = gym.make(task, cfg=env_cfg)
        u = env.unwrapped
        robot = u.scene["robot"]
        origins = u.scene.env_origins
        obj = u.scene.rigid_objects.get("object") if hasattr(u.scene, "rigid_objects") else None
        cabinet = u.scene.articulations.get("cabinet") if hasattr(u.scene, "articulations") else None
        obs, _ = env.reset(seed=seed)
        space = env.action_space
        low = torch.as_tensor(getattr(space, "low", -1.0)).clamp(min=-1.0)
        high = torch.as_tensor(getattr(space, "high", 1.0)).clamp(max=1.0)
        shape = (num_envs,) + tuple(space.shape[1:]) if len(space.shape) > 1 else (num_envs, space.shape[0])
        z_all, jv, rv, obj_z, drawer = [], torch.zeros(robot.num_joints), 0.0, [], []
        ep_len = torch.zeros(num_envs, dtype=torch.long)
        lengths, n_term, n_trunc, nonfinite = [], 0, 0, False
        first_z = None
        for _ in range(steps):
            action = low + (high - low) * torch.rand(shape)
            obs, reward, terminated, truncated, _ = env.step(action)
            pol = obs["policy"] if isinstance(obs, dict) else obs
            nonfinite |= not bool(torch.isfinite(pol).all() and torch.isfinite(reward).all())
            z = (robot.data.root_pos_w.torch[:, 2] - origins[:, 2]).float()
            first_z = float(z.mean()) if first_z is None else first_z
            z_all.append(z)
            jv = torch.maximum(jv, robot.data.joint_vel.torch.abs().max(dim=0).values)
            rv = max(rv, float(robot.data.root_lin_vel_w.torch.abs().max()))
            if obj is not None:
                obj_z.append(float((obj.data.root_pos_w.torch[:, 2] - origins[:, 2]).mean()))
            if cabinet is not None:
                drawer.append(cabinet.data.joint_pos.torch.abs().max(dim=0).values)
            ep_len += 1
            done = (terminated | truncated).cpu()
            n_term += int(terminated.sum())
            n_trunc += int(truncated.sum())
            lengths += ep_len[done].tolist()
            ep_len[done] = 0
        z = torch.stack(z_all)
        masses = robot.data.body_mass.torch[0].tolist() if hasattr(robot.data, "body_mass") else None
        out = {
            "task": task, "num_envs": num_envs, "steps": steps, "seconds": round(time.time() - t0, 1),
            "root_z_first": round(first_z, 4), "root_z_min": round(float(z.min()), 4),
            "root_z_max": round(float(z.max()), 4), "root_z_mean": round(float(z.mean()), 4),
            "max_abs_joint_vel": round(float(jv.max()), 3),
            "max_abs_joint_vel_per_joint": [round(float(v), 3) for v in jv], "max_abs_root_lin_vel": round(rv, 3), "nonfinite": nonfinite,
            "terminated": n_term, "truncated": n_trunc, "episode_lengths": lengths,
            "max_episode_length": int(u.max_episode_length),
            "joint_names": list(robot.joint_names), "body_names": list(robot.body_names),
            "masses": [round(float(m), 4) for m in masses] if masses is not None else None,
            "object_z": [round(v, 4) for v in obj_z[:: max(1, len(obj_z) // 20)]] if obj_z else None,
            "cabinet_joint_pos_max": (dict(zip(cabinet.joint_names, [round(float(v), 4) for v in
                                                                      torch.stack(drawer).max(dim=0).values]))
                                      if drawer else None),
            "joint_stiffness": [round(float(v), 3) for v in robot.data.joint_stiffness.torch[0]],
            "joint_damping": [round(float(v), 3) for v in robot.data.joint_damping.torch[0]],
            "joint_armature": [round(float(v), 4) for v in robot.data.joint_armature.torch[0]],
        }
        env.close()
    print("SMOKE " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
