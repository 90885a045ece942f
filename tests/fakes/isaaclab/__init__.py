"""Fake Isaac Lab. ``FAKE_ISAACLAB_VERSION`` (default 2) selects 2.x or 3.x behaviour at import."""

import os

VERSION = int(os.environ.get("FAKE_ISAACLAB_VERSION", "2"))
