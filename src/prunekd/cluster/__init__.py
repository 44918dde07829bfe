"""Tools for a run on a cluster: its cost in GPU-hours, measured rates, how far it is, the controller job."""
