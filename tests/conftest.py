"""Shared pytest set-up: the repository root on sys.path, so tests import the plugin, training and scripts."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
