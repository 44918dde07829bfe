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
