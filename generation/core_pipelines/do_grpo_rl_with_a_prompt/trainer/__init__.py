"""Stages 4-8, the trainer: the model loaded, TRL's GRPOConfig built from ours, GRPO run.

- batching.py       the batch arithmetic: generation rounds, whole prompt groups, planned steps
- grpo_args.py      TRL's GRPOConfig from the config, in one place (checked before any model loads)
- backends/         loading the model: TRL + PEFT everywhere, Unsloth on a GPU; the generation engine
- model_loading.py  hub ids, local folders and GGUF files; tokenizers
- chat_templates.py the chat_template setting: chatml, TRL's shipped templates, a file or Jinja text
- training.py       GRPOTrainer run, with its callbacks, and the final save
"""
