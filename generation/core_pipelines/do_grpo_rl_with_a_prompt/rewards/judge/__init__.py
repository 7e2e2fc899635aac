"""LLM-judge rewards: grade completions with another LLM against a rubric you write.

    reward_funcs:
      - name: generic_llm_reward
        eval_llm_name: gpt-4o-mini
        eval_llm_base_url: https://api.openai.com/v1     # or local:smollm2-gguf (in-process, no API)
        eval_llm_api_key_env: OPENAI_API_KEY
        system_prompt_path: prompts/evaluation_prompts/rubric_quality.yaml
        score_types: [{name: helpfulness, type: score, min: 1, max: 10}]

The modules, in the order a judged completion passes through them:
- prompt.py   loads the YAML message list and renders it, fencing the policy's text;
- client.py   one OpenAI-compatible client per endpoint: concurrency and rate limits, retries, timeouts;
- local.py    the same interface for `local:<model>`: a transformers model in this process;
- cache.py    sqlite cache of judge answers, so re-runs do not pay twice;
- parsing.py  pure: judge text (or logprobs) -> per-criterion scores, or a reasoned failure;
- stats.py    per-step counters -> `judge/<reward>/<metric>` scalars and the failure policy;
- reward.py   the registered reward (`generic_llm_reward`) tying them together.

Importing this package is cheap: openai and torch load on first use.
"""

from __future__ import annotations

from ...run.stop import RunStopError


class JudgeFailureError(RunStopError):
    """The judge failed on too many calls for too many steps in a row; training on its output would be garbage.

    Raised from inside a judge reward's call. The trainer catches it, saves a checkpoint and stops with the
    message (which names the reward, the failure share and the last error; API keys are redacted).
    """
