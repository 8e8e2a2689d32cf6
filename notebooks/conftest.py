"""Make the nbval run of these notebooks reproducible on any machine.

* The kernels nbval starts inherit this process's environment. Notebook 04 uses a real
  Matterport account when ``MATTERPORT_*`` variables are set, which would contact
  api.matterport.com and change its outputs; the test run is offline by design, so those
  variables are removed before the first notebook kernel starts.
* matplotlib builds its font cache on first import and says so on stderr. In a fresh
  environment that message would land in a notebook cell and fail the output comparison, so
  the cache is built here, before any kernel starts.
"""

from __future__ import annotations

import os

import pytest

try:  # the notebooks extra provides matplotlib; without it the notebooks fail loudly anyway
    import matplotlib.font_manager  # noqa: F401  (importing builds the cache)
except ImportError:  # pragma: no cover
    pass


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Runs for items in this folder only, before nbval starts the notebook's kernel."""
    for name in [n for n in os.environ if n.startswith("MATTERPORT_")]:
        del os.environ[name]
