"""Import TensorFlow and Keras without their start-up chatter.

TensorFlow 2.21 prints "oneDNN custom operations are on" (and absl's note about it) from C++
before its logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` does not hold it back; every Python
worker used to print it twice. The first import in a process goes through :func:`quiet_import`,
which captures file descriptor 2 while TensorFlow and Keras load and passes on every other line.
oneDNN itself stays on.
"""

from __future__ import annotations

import os
import sys
import tempfile

#: Start-up lines that say nothing a user can act on.
_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
)


def quiet_import() -> None:
    """Import tensorflow and keras once per process, dropping only their known start-up lines."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
    kept = [line for line in text.splitlines() if not any(n in line for n in _NOISE)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
        sys.stderr.flush()
