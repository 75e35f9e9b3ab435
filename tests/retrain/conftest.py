"""Puts this folder on sys.path so the tests can import the ``retrain_synthetic`` helpers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
