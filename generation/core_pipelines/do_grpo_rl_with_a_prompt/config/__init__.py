"""Stage 1, the config: what a run is asked to do, checked in full before anything heavy loads.

- schema.py      the pydantic schema: every key, its default, its check, its help text (the README's reference)
- files.py       reading a YAML file, --set overrides, validation errors that name the file and the key
- redaction.py   secrets written as *** in the resolved config and the process's arguments
"""
