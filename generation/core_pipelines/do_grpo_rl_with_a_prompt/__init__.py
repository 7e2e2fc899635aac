"""The GRPO node: fine-tune a LoRA with GRPO against rewards you write (see README.md).

Importing this package is cheap and has no side effects; torch, TRL and friends load only when training.
"""
