"""A module whose import is interrupted as by Ctrl-C: `vigil.prefect_api`'s warm-up imports it
while the temporary API starts (tests/test_interrupts.py)."""

import os
import signal

os.kill(os.getpid(), signal.SIGINT)  # Python's own handler: KeyboardInterrupt, here, mid-import
