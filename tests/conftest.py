"""Session-wide test settings."""
from __future__ import annotations

import getpass
import os
import tempfile

# Inductor's on-disk cache is not keyed by ATEN_CPU_CAPABILITY: C++ it compiled under one capability fails to build
# under another ("'at::vec' has not been declared"). One cache per capability lets scripts/test_matrix.sh (and any
# user switching the variable) run the compile tests in any order.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}_{os.environ.get('ATEN_CPU_CAPABILITY', 'native')}"))

from inferkit import isolated_home, tiny_weights  # noqa: E402,F401 (fixtures for every test module)
