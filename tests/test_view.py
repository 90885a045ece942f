"""``python -m tasks.view``: the PNG writer, and the rendered initial poses of Anymal and Ingenuity."""

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from conftest import REPO
from tasks.view import pick_gl_backend, write_png


def _read_png(path):
    """Decode an 8-bit RGB, filter-0 PNG (what ``write_png`` writes) into ``(H, W, 3)`` uint8."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(height, width, 3)


def test_write_png_round_trip(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    write_png(tmp_path / "x.png", image)
    assert np.array_equal(_read_png(tmp_path / "x.png"), image)


@pytest.mark.parametrize("task", ["Anymal", "Ingenuity"])
def test_view_renders_the_initial_pose(task, tmp_path):
    if pick_gl_backend() is None:
        pytest.skip("no offscreen OpenGL backend (EGL/OSMesa) on this machine")
    out = tmp_path / f"{task}.png"
    proc = subprocess.run([sys.executable, "-m", "tasks.view", task, "--out", str(out), "--width", "160",
                           "--height", "120"], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert f"{task} initial pose -> {out}" in proc.stdout
    image = _read_png(out)
    assert image.shape == (120, 160, 3)
    centre = image[30:90, 40:120].astype(float)
    assert centre.std() > 10  # the robot in front of the floor, not a flat colour


def test_view_rejects_unknown_task(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tasks.view", "Nope", "--out", str(tmp_path / "x.png")], cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    if "no offscreen OpenGL backend" in proc.stderr:
        pytest.skip("no offscreen OpenGL backend on this machine")
    assert proc.returncode == 2 and "'Nope'" in proc.stderr and not (tmp_path / "x.png").exists()
