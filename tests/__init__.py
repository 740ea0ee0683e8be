"""loopline's tests: unit/ mirrors src/loopline, e2e/ runs the real thing (marked slow).

Every test folder is a package (an ``__init__.py`` each), so test files of the same name in
different folders (unit/registry/test_actions.py, unit/monitoring/test_actions.py) import as
different modules, and shared code is imported as ``tests.helpers.<module>``.
"""
