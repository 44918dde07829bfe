"""The command line: a user's mistake is one line naming the command and what to fix, never a traceback."""

import pandas as pd
import pytest

from prunekd.cli import main


def test_a_user_error_is_one_line_naming_the_command(tmp_path):
    man = tmp_path / "m.tsv"
    pd.DataFrame({"row": [0], "id": ["abc"], "path": ["/a/abc.wav"], "status": ["ok"]}).to_csv(
        man, sep="\t", index=False
    )
    with pytest.raises(SystemExit) as e:
        main(["clip-jobs", "--manifest", str(man), "--shard-size", "10", "no-such-clip"])
    msg = str(e.value.code)
    assert msg.startswith("prunekd clip-jobs: ") and "no-such-clip" in msg and "\n" not in msg


def test_a_step_called_by_name_gets_its_flags_and_settings(tmp_path):
    with pytest.raises(SystemExit) as e:  # rates_step through _step: its RatesError as one line
        main(["rates", "--results", str(tmp_path / "none")])
    assert str(e.value.code).startswith("prunekd rates: ") and "none" in str(e.value.code)


GLIBC = __import__("platform").libc_ver()[0] == "glibc"
REUSE = r"""
import resource, sys
import numpy as np
from prunekd.cli import keep_freed_memory
held = keep_freed_memory()
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):  # a step's tensors: several allocated and written together, then freed together
        blocks = [np.ones(4 << 20, dtype=np.uint8) for _ in range(8)]
        del blocks
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(held, faults())
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_a_step_reuses_the_memory_it_frees_unless_the_user_tuned_malloc():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", REUSE], env=env, capture_output=True, text=True, check=True).stdout
    held, faults = out.split()
    # 32 MB written five times: with glibc's defaults the freed top of the heap goes back to the kernel at each
    # round and comes again as fresh pages: about 20,000 faults here
    assert held == "True" and int(faults) < 500
    out = subprocess.run(
        [sys.executable, "-c", REUSE], env={**env, "MALLOC_TRIM_THRESHOLD_": "131072"},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.split()[0] == "False"  # the user's own setting stands
