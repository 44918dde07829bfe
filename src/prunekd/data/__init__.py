"""Stage 1, the clips: manifests from the layouts users hold, decoding, clip datasets, packed AudioSet and its
node-local staging, a target's clips decoded once."""
