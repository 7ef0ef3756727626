"""Hypothesis profiles of the property tests.

``ci`` (the default) runs few examples so the whole directory stays well under a
minute; ``dev`` runs many more.  Pick one with ``ATLAS_HYPOTHESIS_PROFILE=dev``.
Tests under ``@given`` make their own temporary directories
(:func:`tempfile.TemporaryDirectory`): function-scoped fixtures such as
``tmp_path`` are shared by every example of a ``@given`` test.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}

# CI is derandomized so a run is reproducible from the commit alone; ``dev`` explores.
settings.register_profile("ci", max_examples=40, stateful_step_count=30, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=400, stateful_step_count=60, **_COMMON)
settings.load_profile(os.environ.get("ATLAS_HYPOTHESIS_PROFILE", "ci"))
