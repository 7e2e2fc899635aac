"""Built-in reward functions, one small module per kind. Importing this package registers them all.

| name                        | module             | rewards                                                      |
|-----------------------------|--------------------|--------------------------------------------------------------|
| think_format                | formatting.py      | the reasoning layout (<think>...</think> answer)             |
| think_answer_format         | tags.py            | the strict <think>...</think><answer>...</answer> layout     |
| tag_count                   | tags.py            | 0.25 per think/answer tag line present once (open-r1)        |
| similarity_gate             | formatting.py      | not parroting: answer != reasoning, answer != prompt         |
| final_answer_match          | answers.py         | the final answer equals the reference's (numeric/math/exact) |
| gsm8k_correctness           | answers.py         | final_answer_match, numeric, 2.0 when right (seed name)      |
| gsm8k_reward                | answers.py         | the same as gsm8k_correctness (seed name)                    |
| gsm8k_integerresponse       | answers.py         | the final answer is an integer (0.5, seed name)              |
| cosine_scaled_correctness   | length_shaping.py  | correctness scaled by token length (open-r1 / TRL cosine)    |
| soft_overlong_punishment    | length_shaping.py  | DAPO: penalty as the completion nears the token limit        |
| reasoning_steps             | reasoning_steps.py | visible steps ("Step 1:", lists, "First,") (open-r1)         |
| ifeval_instructions         | ifeval.py          | share of the row's IFEval instructions followed              |
| gec_edit_f1                 | gec.py             | grammar correction: edit F0.5 against the reference(s)       |
| length_reward               | length.py          | a length near a target (plateau, linear fall-off)            |
| max_length                  | length.py          | brevity: at most max_words / max_chars                       |
| repetition_penalty          | repetition.py      | few repeated n-grams (CJK: per character)                    |
| reward_model                | reward_model.py    | a trained reward model's score (sequence classifier, as TRL) |

math_equivalence.py holds the math-verify wrapper that answers.py uses (mode: math).
Every reward follows the contract in rewards/registry.py: an initializer called once with the config's
keyword arguments returns `reward(prompts, completions, **columns) -> list[float | None]`.
To write your own, copy one of these into reward_functions.py and rename it.
"""

from . import (  # noqa: F401  (importing registers the rewards)
    answers,
    formatting,
    gec,
    ifeval,
    length,
    length_shaping,
    reasoning_steps,
    repetition,
    reward_model,
    tags,
)
