"""The run directory and the run's life: where it writes, how it resumes, how it stops, what it reports.

- directory.py    create or resume the run directory; one run at a time (lock); --fresh
- resume.py       whether a resume is safe, and whether the run already finished
- checkpoints.py  checkpoints published whole, rotated, and the best one kept
- stop.py         errors that stop a run with a checkpoint, Ctrl-C / SIGTERM, exit status
- files.py        the directory's paths, atomic writes, JSONL appenders
- records.py      per-completion records: high-scoring examples, the batch log, console samples
- reporting.py    wandb / tensorboard, metrics.jsonl, summary and plots
- console.py      one compact console line per logging step
"""
