#!/usr/bin/env python
"""``python runner.py task=Humanoid headless=True``: same as the installed ``meow-isaac`` command."""

from meow_isaac.runner import main

if __name__ == "__main__":
    main()
