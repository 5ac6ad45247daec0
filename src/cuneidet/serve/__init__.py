"""The web application: upload tablet photos, detect signs, inspect, correct and export them.

``cuneidet-serve`` (:mod:`cuneidet.cli.serve`) composes ``configs/serve.yaml`` and runs
:func:`cuneidet.serve.app.create_app` under uvicorn. The layers, bottom up: :mod:`.settings`,
:mod:`.db` (SQLite through SQLAlchemy), :mod:`.security` (passwords, sessions, CSRF, login rate
limit), :mod:`.uploads` (checked, stored photos), :mod:`.detection` (the detector and the signs
it finds), :mod:`.jobs` (the persistent job queue and its worker), :mod:`.exports`, and the
routes in :mod:`.app` and :mod:`.routes`. The HTTP API is documented in ``docs/serve-api.md``.
"""
