"""The registry commands (cli/registry.py): `loopline which` imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys

from loopline.registry import actions as registry
from tests.helpers.registry_repo import Repo, cli


def test_which_as_a_whole_command_imports_nothing_heavy(repo: Repo) -> None:
    repo.register("a")
    registry.promote("v0.1.0", "prod", root=repo.path)
    script = ("import sys\nfrom loopline.cli.app import app, main\n"
              "from loopline.cli.registry import add_commands\n"
              "if 'which' not in {c.name for c in app.registered_commands}:\n"
              "    add_commands(app)\n"
              f"sys.argv = ['loopline', 'which', 'prod', '-C', {str(repo.path)!r}]\n"
              "try:\n    main()\nfinally:\n"
              "    heavy = ('pydantic', 'dvc', 'git', 'pandas', 'hydra', 'yaml', 'rich')\n"
              "    print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.stdout.strip() == "v0.1.0"
    assert res.stderr.strip().splitlines()[-1] == "[]"
    bad = cli(repo.path, "history", "--limit", "x")
    assert bad.exit_code == 2 and "'x' is not a valid int" in bad.output
