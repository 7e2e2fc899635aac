"""Build a tiny but real reward model for tests: a random 2-layer LlamaForSequenceClassification.

Its tokenizer is tiny_model's with a chat template of its own (unlike the policy's), so a test sees that the
reward model reads texts rendered with its template; and, like Llama 3's, it adds a BOS token unless told not
to, so a test sees that no special tokens are added.
"""

from __future__ import annotations

from pathlib import Path

from tiny_model import build_tiny_model

RM_CHAT_TEMPLATE = "{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }}\n{% endfor %}"


def build_tiny_reward_model(directory: str | Path, num_labels: int = 1, pad_token: bool = True,
                            hidden_size: int = 64) -> Path:
    """Save a tiny LlamaForSequenceClassification + tokenizer (own chat template) into `directory`."""
    import torch
    from tokenizers import processors
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    directory = build_tiny_model(directory, hidden_size=hidden_size)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.chat_template = RM_CHAT_TEMPLATE
    bos = (tokenizer.bos_token, tokenizer.bos_token_id)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos[0]} $A", pair=f"{bos[0]} $A {bos[0]} $B", special_tokens=[bos])
    if not pad_token:
        tokenizer.pad_token = None
    tokenizer.save_pretrained(directory)

    torch.manual_seed(1)
    config = LlamaConfig.from_pretrained(directory)
    config.num_labels = num_labels
    config.architectures = ["LlamaForSequenceClassification"]
    model = LlamaForSequenceClassification(config)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # scores far apart, so a wrong pooling token shows
    model.save_pretrained(directory)
    return Path(directory)
