"""Reward models: score completions with a trained sequence-classification model (Skywork-Reward, a user's own RM).

Scoring is TRL's for a model in `reward_funcs` (GRPOTrainer._calculate_rewards, TRL 1.15 and 1.16 alike):
the prompt's messages plus the completion as one assistant turn, rendered with the reward model's own
tokenizer and chat template (trl.data_utils.apply_chat_template); a plain-text prompt as prompt + completion;
tokenized with right padding and no added special tokens; the score is `logits[:, 0]` (or `label_index`).
The pad token is the tokenizer's, else its eos token, as TRL sets it; the model's config gets that pad id.

Start-up (also at --dry-run) reads only the model's config and tokenizer files; the weights load on the
first call, once, in eval mode with no gradients. Under DeepSpeed ZeRO-3 or FSDP the reward model is loaded
whole, beside the sharded policy (see `loading_whole`).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from typing import Any, Iterator, Optional, Sequence

from ...distributed import cuda_available, local_rank
from ..registry import register_reward_function
from .common import as_text

CLASSIFIER_SUFFIX = "ForSequenceClassification"


def rm_texts(prompts: Sequence[Any], completions: Sequence[Any], tokenizer: Any = None,
             chat_template_kwargs: Optional[dict] = None) -> list[str]:
    """What the reward model reads, as TRL builds it: messages + the completion as an assistant turn through
    the RM's chat template; a plain-text (or missing) prompt as prompt + completion.

    >>> rm_texts(["Q: 2+2? A: ", None], ["4", "hi"])
    ['Q: 2+2? A: 4', 'hi']
    """
    texts = []
    for prompt, completion in zip(prompts, completions, strict=True):
        completion = as_text(completion)
        if prompt is None or isinstance(prompt, str):
            texts.append((prompt or "") + completion)
            continue
        from trl.data_utils import apply_chat_template

        messages = [*prompt, {"role": "assistant", "content": completion}]
        texts.append(apply_chat_template({"messages": messages}, tokenizer, **(chat_template_kwargs or {}))["text"])
    return texts


def affine(normalize: Optional[dict], scale: float, shift: float) -> tuple[float, float]:
    """(a, b) such that a reward is a * logit + b: ((logit - mean) / std) * scale + shift.

    >>> affine({"mean": 2.0, "std": 4.0}, 1.0, 0.5)
    (0.25, 0.0)
    """
    normalize = dict(normalize or {})
    unknown = set(normalize) - {"mean", "std"}
    if unknown:
        raise ValueError(f"reward_model: normalize takes mean and std, not {', '.join(sorted(unknown))}")
    mean, std = float(normalize.get("mean", 0.0)), float(normalize.get("std", 1.0))
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise ValueError(f"reward_model: normalize needs a finite mean and a positive std, got {normalize}")
    if not (math.isfinite(scale) and math.isfinite(shift)):
        raise ValueError("reward_model: scale and shift must be finite numbers")
    return scale / std, shift - mean * scale / std


def read_reward_model(model: str, revision: Optional[str], trust_remote_code: bool, label_index: Optional[int]
                      ) -> tuple[Any, int]:
    """The reward model's tokenizer (pad token set as TRL sets it) and the logit column to read; from its
    config and tokenizer files only. Raises ValueError for anything that is not a usable reward model."""
    from transformers import AutoConfig, AutoTokenizer

    options = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(model, **options)
    except (OSError, ValueError) as error:
        raise ValueError(f"reward_model: cannot read the config of '{model}' (a hub id or a local folder): "
                         f"{' '.join(str(error).split())[:300]}") from None
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(name.endswith(CLASSIFIER_SUFFIX) for name in architectures):
        raise ValueError(f"reward_model: '{model}' is not a sequence classifier (architectures: "
                         f"{', '.join(architectures) or 'none'}; a reward model's ends in {CLASSIFIER_SUFFIX})")
    labels = int(getattr(config, "num_labels", 1))
    if label_index is None and labels != 1:
        raise ValueError(f"reward_model: '{model}' has {labels} labels: set label_index (0 to {labels - 1}) "
                         "to say which logit is the reward")
    index = 0 if label_index is None else label_index
    if not 0 <= index < labels:
        raise ValueError(f"reward_model: label_index {index} is out of range for '{model}' ({labels} labels)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, **options)
    except (OSError, ValueError) as error:
        raise ValueError(f"reward_model: cannot load the tokenizer of '{model}': "
                         f"{' '.join(str(error).split())[:300]}") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"reward_model: the tokenizer of '{model}' has no pad token and no eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token  # as TRL does
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"reward_model: the tokenizer of '{model}' has no chat template; prompts here are chat "
                         "messages, which a reward model reads through its own template")
    return tokenizer, index


def check_device(device: Optional[str]) -> None:
    """Raise ValueError for a device torch cannot name or that is not there (None: the training device)."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"reward_model: device '{device}': {error}") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"reward_model: device '{device}': no CUDA GPU is visible (use device: cpu)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"reward_model: device '{device}': only {torch.cuda.device_count()} GPU(s) visible")


def training_device() -> str:
    """The device this process trains on: cuda:LOCAL_RANK with a GPU (as accelerate picks it), else cpu."""
    return f"cuda:{local_rank()}" if cuda_available() else "cpu"


@contextlib.contextmanager
def loading_whole() -> Iterator[None]:
    """Load a model unsharded while the policy trains sharded.

    Under DeepSpeed ZeRO-3, transformers' from_pretrained partitions every model over the ranks while a
    HfDeepSpeedConfig is alive (TRL then wraps its RM in a DeepSpeed engine, whose forward needs every rank to
    call it in step). Here each rank scores its own completions alone, so the RM is loaded whole on each rank:
    the HfDeepSpeedConfig reference is cleared for the load and put back after. FSDP's cpu_ram_efficient_loading
    (which leaves non-main ranks to receive weights from rank 0) is switched off for the load likewise.
    Not testable without GPUs: tests check only that both switches are off inside and restored after.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    saved_reference = hf_deepspeed._hf_deepspeed_config_weak_ref
    saved_env = os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING")
    hf_deepspeed.unset_hf_deepspeed_config()
    os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "false"
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved_reference
        if saved_env is None:
            os.environ.pop("FSDP_CPU_RAM_EFFICIENT_LOADING", None)
        else:
            os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = saved_env


class RewardModelScorer:
    """The `reward_model` reward: raw logits from `raw_scores`, the configured affine map applied by calling it."""

    def __init__(self, model: str, tokenizer: Any, label_index: int, batch_size: int, device: Optional[str],
                 coefficients: tuple[float, float], chat_template_kwargs: Optional[dict], revision: Optional[str],
                 trust_remote_code: bool):
        self.model_name, self.tokenizer, self.label_index = model, tokenizer, label_index
        self.batch_size, self.requested_device = batch_size, device
        self.coefficients, self.chat_template_kwargs = coefficients, dict(chat_template_kwargs or {})
        self.load_options = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.model: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """The model, loaded on the first call only: on its device, bfloat16 on a GPU that has it, eval mode,
        no gradients, and its config's pad id set to the tokenizer's (as TRL does)."""
        with self._lock:
            if self.model is None:
                self.model = self._load()
        return self.model

    def _load(self) -> Any:
        import torch
        from transformers import AutoModelForSequenceClassification

        device = torch.device(self.requested_device or training_device())
        dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        with loading_whole():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                self.model_name, dtype=dtype, device_map=str(device), output_loading_info=True, **self.load_options
            )
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            raise ValueError(f"reward_model: '{self.model_name}' has no weights for {', '.join(missing[:3])}: "
                             "not a trained reward model (its score head would be random)")
        model.config.get_text_config().pad_token_id = self.tokenizer.pad_token_id
        return model.eval().requires_grad_(False)

    def raw_scores(self, texts: Sequence[str]) -> list[float]:
        """The reward model's logit `label_index` for each text, batch_size texts at a time."""
        if not texts:
            return []
        import torch

        model = self.load()
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                inputs = self.tokenizer(text=list(texts[start:start + self.batch_size]), return_tensors="pt",
                                        padding=True, padding_side="right", add_special_tokens=False)
                logits = model(**inputs.to(model.device)).logits[:, self.label_index]
                scores.extend(logits.float().tolist())
        return scores

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float]:
        a, b = self.coefficients
        texts = rm_texts(prompts, completions, self.tokenizer, self.chat_template_kwargs)
        return [a * score + b for score in self.raw_scores(texts)]


@register_reward_function("reward_model")
def reward_model(
    model: str,
    batch_size: int = 16,
    device: Optional[str] = None,
    label_index: Optional[int] = None,
    normalize: Optional[dict] = None,
    scale: float = 1.0,
    shift: float = 0.0,
    chat_template_kwargs: Optional[dict] = None,
    revision: Optional[str] = None,
    trust_remote_code: bool = False,
):
    """Scores each completion with a trained reward model (a sequence classifier: Skywork-Reward-V2, a user's own).

    Scores exactly as TRL's GRPOTrainer._calculate_rewards does for a model reward: the prompt messages plus
    the completion as the assistant turn, rendered with the reward model's own tokenizer and chat template
    (chat_template_kwargs passed on, as TRL passes training's); a plain-text prompt as prompt + completion;
    right padding, no added special tokens; the score is `logits[:, 0]`, or `logits[:, label_index]` for a
    model with several labels (required then). The raw logit is unbounded: `normalize` ((logit - mean) / std)
    then `scale` and `shift` (value * scale + shift) put it on the scale of other rewards. Never None.

    model is a hub id or a local folder. Start-up (also --dry-run) reads only its config and tokenizer and
    exits 2 when it is not a sequence classifier, has several labels and no label_index, or has neither a
    pad nor an eos token. The weights load on the first call (downloading them if needed: give that call
    time, e.g. time_limit_s, or download first), once, eval mode, no gradients, on `device` (default: this
    process's training device, cuda:LOCAL_RANK or cpu), bfloat16 on a GPU. Several processes: each loads its
    own copy and scores its own completions; under DeepSpeed ZeRO-3 / FSDP it is loaded whole, not sharded
    with the policy. Texts are not truncated (as TRL): keep prompts + completions within the RM's context.

    Config:
        reward_funcs:
          - name: reward_model
            model: Skywork/Skywork-Reward-V2-Llama-3.1-8B   # hub id or local folder
            batch_size: 16
            # device: cuda:1                  # default: the training device
            # normalize: {mean: 0.0, std: 4.0}
            # scale: 0.5
            # shift: 0.5
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"reward_model: batch_size must be a positive integer, not {batch_size!r}")
    if label_index is not None and (not isinstance(label_index, int) or isinstance(label_index, bool)):
        raise ValueError(f"reward_model: label_index must be an integer, not {label_index!r}")
    coefficients = affine(normalize, float(scale), float(shift))
    check_device(device)
    tokenizer, index = read_reward_model(str(model), revision, bool(trust_remote_code), label_index)
    return RewardModelScorer(str(model), tokenizer, index, batch_size, device, coefficients, chat_template_kwargs,
                             revision, bool(trust_remote_code))
