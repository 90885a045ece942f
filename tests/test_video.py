"""Headless video: a short clip is rendered and its frames are not blank."""

from pathlib import Path

import numpy as np
import pytest

from test_runner import SMALL, _run


def test_training_and_test_videos_have_non_blank_frames(tmp_path, monkeypatch):
    imageio = pytest.importorskip("imageio.v2")
    monkeypatch.chdir(tmp_path)
    out = _run(SMALL + ["task=Hopper", "num_envs=1", "experiment=vid", "max_iterations=100", "capture_video=True",
                        "capture_video_freq=100", "capture_video_len=40", "train.eval_interval=0"])
    video = Path(out["run_dir"]) / "videos" / "iter_100.mp4"
    assert video.is_file()
    frames = np.stack(imageio.mimread(str(video)))
    assert frames.ndim == 4 and 2 <= len(frames) <= 40 and frames.shape[-1] == 3
    for frame in frames[[0, -1]]:
        assert frame.std() > 10  # a rendered scene, not a flat colour
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.5  # the robot moved

    _run(SMALL + ["task=Hopper", "num_envs=1", f"checkpoint={Path(out['run_dir']) / 'nn' / 'vid.pth'}", "test=True",
                  "capture_video=True", "capture_video_len=20"])
    assert (Path(out["run_dir"]) / "videos" / "test_vid.mp4").is_file()
