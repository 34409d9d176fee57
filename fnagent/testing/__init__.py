"""Test doubles and conformance cases, for this project's tests and for anyone building on it
(a new driver, a new store backend, a test of code that calls the agent). Needs the ``test``
extra (pytest) for the store cases; nothing in fnagent outside this package imports it.

- :mod:`fnagent.testing.clock`: ``ManualClock``, time that moves only on ``advance``;
- :mod:`fnagent.testing.fakefn`: ``http_function``, a real http-stream function (unix socket,
  Fn's listener dance) for the fake driver, its handler deciding each answer;
- :mod:`fnagent.testing.driver_conformance`: the cases every ``drivers.base.Driver`` passes
  (run on the fake driver by ``tests/unit/test_conformance_fake.py``, on Docker by
  ``tests/system/test_conformance_docker.py``);
- :mod:`fnagent.testing.store_conformance`: the cases every ``fnagent.store.Store`` backend
  passes (``tests/unit/test_store_conformance.py``).

The fake driver itself is ``drivers.fake`` (``FakeDriver``: in-memory containers running
Python "programs"); it lives under ``drivers`` because drivers never import fnagent.
"""
