"""Running programs (core/proc.py): one error format, and descriptors a child keeps."""

from __future__ import annotations

import os
import sys

import pytest

from loopline.core.errors import LooplineError
from loopline.core.proc import run


def test_a_passed_descriptor_is_the_childs_too_and_failures_are_one_line() -> None:
    r, w = os.pipe()
    try:
        run([sys.executable, "-c", f"import os; os.write({w}, b'held\\n')"], pass_fds=(w,))
    finally:
        os.close(w)
    assert os.read(r, 100) == b"held\n"
    os.close(r)
    with pytest.raises(LooplineError, match=r"^sh failed \(exit 3\): error: no$"):
        run(["sh", "-c", "echo 'error: no' >&2; exit 3"])
    with pytest.raises(LooplineError, match=r"^cannot run no-such-program-here: "):
        run(["no-such-program-here"])
