"""Stage 1, configuration: YAML and flags to a frozen, typed config, every problem with its key
path. Imports nothing of the exporter outside this folder (a test checks), so validation,
`--check-config` and reload never start anything."""
