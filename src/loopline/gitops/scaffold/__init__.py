"""``loopline init``: scaffold a new, working loopline instance for the user's own data.

An instance is a Git + DVC repository laid out like the reference instance at the root of
the loopline repository. Its conf/ holds only what is its own: conf/config.yaml and a data
option, ``conf/data/<name>.yaml``, with a schema inferred by :mod:`loopline.pipeline.schema`;
every other config group is loopline's packaged default (:mod:`loopline.config.defaults`),
so upgrading loopline upgrades them. dvc.yaml, conf/config.yaml and the GitHub workflows
are the reference's own files, adapted (:mod:`.sources` finds them, :mod:`.render` adapts
them); params.yaml is composed exactly as ``loopline params`` does.

- :mod:`.plan` reads the data and decides everything, checking what the user can get
  wrong before anything is written;
- :mod:`.render` makes the files;
- :mod:`.write` writes the repository and its first commit, and removes what it made if a
  step fails.
"""

from loopline.gitops.scaffold.write import run, summary

__all__ = ["run", "summary"]
