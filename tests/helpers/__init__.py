"""Code the tests share: commands, instances and synthetic data (no tests here).

Importable by unit and end-to-end tests alike as ``tests.helpers.<module>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: the loopline checkout, which is also the reference instance
REPO = Path(__file__).resolve().parents[2]
#: the venv's bin directory: loopline, dvc, uv, actionlint
BIN = Path(sys.executable).parent
