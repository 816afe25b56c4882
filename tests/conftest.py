"""Shared test settings: offline, few threads (the suite must run on 2 CPU cores), stable hypothesis."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

from hypothesis import HealthCheck, settings

# CI machines are slow and noisy: no per-example deadline, but a bounded number of examples.
settings.register_profile("ci", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
