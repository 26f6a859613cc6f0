"""Session-wide test settings."""
from __future__ import annotations

import atexit
import getpass
import os
import shutil
import tempfile

# Inductor's on-disk cache is not keyed by ATEN_CPU_CAPABILITY: C++ it compiled under one capability fails to build
# under another ("'at::vec' has not been declared"). One cache per capability lets scripts/test_matrix.sh (and any
# user switching the variable) run the compile tests in any order.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}_{os.environ.get('ATEN_CPU_CAPABILITY', 'native')}"))

# Every output of the model is signed (C2PA) with a local key made once in $HIFIFACE_HOME/signing: a test that writes
# one without its own isolated_home must not make or use a key in the developer's ~/.cache/hififace. One empty
# folder per session (tests that need their own set HIFIFACE_HOME themselves), removed at exit.
_HOME = tempfile.mkdtemp(prefix="hififace-test-home-")
os.environ["HIFIFACE_HOME"] = _HOME
atexit.register(shutil.rmtree, _HOME, True)

from inferkit import isolated_home, tiny_weights  # noqa: E402,F401 (fixtures for every test module)
