"""Stage 3, the rewards: from the config's reward_funcs to the one reward function TRL calls.

- registry.py          @register_reward_function and the modules that register rewards
- user_code.py         the user's reward files (reward.modules) and dotted import paths
- adapters.py          TRL reward functions / factories and Augmentoolkit's per-sample rewards, run as ours
- plan.py              each dataset's rewards resolved and initialized once, before any model loads
- builtin/             the built-in rewards, one file per kind (format, answers, length, IFEval, GEC, ...)
- judge/               the LLM judge: prompt, client, limits, cache, parsing, statistics
- calls.py             one reward on one batch: private inputs, time limit, checked result (results.py)
- combined.py          CombinedReward: route, combine, scale, log, hand the step to the writers
- post_processors.py   combination and scaling functions (verl's advantage estimators among them)
- step.py              a reward call's scored batch and its one exchange between processes
- advantage_metrics.py the advantages TRL will compute from the rewards, for logging
- reasoning_text.py    <think>-style reasoning split from the answer
"""
