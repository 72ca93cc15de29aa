"""A job for the record tests: a child that starts a grandchild; both touch memory and
burn CPU for a while; the child writes both pids to a file and exits with code 3.

    python record_job.py SECONDS PIDFILE
"""

import os
import subprocess
import sys
import time

MIB = 2**20


def burn(seconds: float, megabytes: int) -> bytearray:
    hold = bytearray(megabytes * MIB)
    for i in range(0, len(hold), 4096):  # touched pages count in RSS
        hold[i] = 1
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return hold


if sys.argv[1] == "grandchild":
    burn(float(sys.argv[2]), 40)
    sys.exit(0)

seconds, pidfile = float(sys.argv[1]), sys.argv[2]
grandchild = subprocess.Popen([sys.executable, __file__, "grandchild", str(seconds)])
with open(pidfile + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {grandchild.pid}")
os.replace(pidfile + ".tmp", pidfile)
burn(seconds, 30)
grandchild.wait()
sys.exit(3)
