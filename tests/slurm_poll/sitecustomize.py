"""Test harness only (tests/test_slurm.py puts this folder on PYTHONPATH): keep the SLURM executor plugin's status
checks every 2 s.

The plugin adds 10 s to the wait before its next `squeue` each time a check finds no finished job (1, 11, 21 s ...),
a sensible back-off for a cluster's minutes-long jobs. The test DAG's jobs take about 10 s each, so the back-off
left about 20 s between a job's end and the next job's submission at each of the DAG's levels: half the time of the
SLURM tests. What is tested (sbatch, the profiles, GRES, results) is unchanged.
"""

import sys

if sys.argv and sys.argv[0].endswith("snakemake"):  # the snakemake entry point only, not prunekd or pytest
    try:
        import snakemake_executor_plugin_slurm as _slurm
    except ImportError:
        pass
    else:
        _check = _slurm.Executor.check_active_jobs

        async def _check_every_2_s(self, active_jobs):
            async for job in _check(self, active_jobs):
                yield job
            self.next_seconds_between_status_checks = min(self.next_seconds_between_status_checks or 2, 2)

        _slurm.Executor.check_active_jobs = _check_every_2_s
