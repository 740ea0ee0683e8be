"""loopline's generic conf groups: the defaults every instance composes its config from.

features, model, search, evaluate, export, gate, serve and monitor live here and nowhere
else. An instance's conf/config.yaml reaches them through Hydra's search path
(``hydra: searchpath: [pkg://loopline.config.defaults]``), after its own conf/: an option
of its own (e.g. conf/gate/credit.yaml, which may start from ``defaults: [default]``)
adds to or shadows these, and upgrading loopline upgrades the rest.
"""

from pathlib import Path

SEARCHPATH = f"pkg://{__name__}"  # as conf/config.yaml names it under hydra.searchpath
DIR = Path(__file__).parent
