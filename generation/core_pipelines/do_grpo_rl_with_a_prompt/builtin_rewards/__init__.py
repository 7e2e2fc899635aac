"""Built-in reward functions, one small module per kind. Importing this package registers them all.

| name                                   | module         | rewards                                                  |
|----------------------------------------|----------------|----------------------------------------------------------|
| think_format                           | formatting.py  | the reasoning layout (<think>...</think> answer)          |
| similarity_gate                        | formatting.py  | not parroting: answer != reasoning, answer != prompt      |
| final_answer_match                     | answers.py     | the final answer equals the reference's (exact/numeric)   |
| gsm8k_correctness, gsm8k_reward        | answers.py     | final_answer_match, numeric, 2.0 when right (seed names)  |
| gsm8k_integerresponse                  | answers.py     | the final answer is an integer (0.5, seed name)           |
| gec_edit_f1                            | gec.py         | grammar correction: F-score of edits against the target   |
| length_reward                          | length.py      | a length near a target (plateau, linear fall-off)         |
| max_length                             | length.py      | brevity: at most max_words / max_chars                    |
| repetition_penalty                     | repetition.py  | few repeated n-grams                                      |

Every reward follows the contract in reward_registry.py: an initializer called once with the config's
keyword arguments returns `reward(prompts, completions, **columns) -> list[float | None]`.
To write your own, copy one of these into reward_functions.py and rename it.
"""

from . import answers, formatting, gec, length, repetition  # noqa: F401  (importing registers the rewards)
