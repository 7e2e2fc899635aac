"""The registered LLM-judge reward: `generic_llm_reward` (the seed's name; its kwargs keep working).

Per completion: the think-tag format gate (a failing completion gets `format_fail_score`, no judge call),
then the judge prompt is rendered, answered from the cache or by the judge, parsed against score_types and
combined into one reward. All judge calls of a step run concurrently (bounded per endpoint). A failed call
yields `fallback_score` (default None: the completion is left out of this reward), and is counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Sequence, Union
from urllib.parse import urlsplit

from pydantic import Field

from ...config.schema import ConfigError
from ...distributed import world_size
from ..registry import register_reward_function, typed_arguments
from ..reasoning_text import passes_cot_format, strip_reasoning
from .cache import DEFAULT_CACHE_PATH, JudgeCache, open_cache
from .client import CallOutcome, JudgeRequest, Limits, get_client, register_secret
from .local import PREFIX as LOCAL_PREFIX, LocalJudge, is_local
from .parsing import Criterion, Verdict, combine, criteria_from_config, parse_group_judgement, parse_judgement
from .prompt import JudgePrompt, load_prompt, missing_tags
from .stats import FailureWatch, StepStats, log_step

logger = logging.getLogger(__name__)

RESERVED_TAG = re.compile(r"think|response_\d+", re.I)  # tags the parser reads as the judge's own structure
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what eval_llm_api_key_env may hold
SEED_MODES = (None, "api")  # the seed's EngineWrapper mode; only the OpenAI-compatible API is spoken here


@register_reward_function("generic_llm_reward")
@typed_arguments  # every argument's type checked at start-up (--dry-run): one line naming it
def generic_llm_reward(
    system_prompt_path: str,
    score_types: list[dict],
    eval_llm_name: Optional[str] = None,
    eval_llm_base_url: Optional[str] = None,
    eval_llm_api_key_env: Optional[str] = None,
    eval_llm_api_key: Optional[str] = None,
    eval_llm_mode: Optional[str] = None,
    cot_start: Optional[str] = None,
    cot_end: Optional[str] = None,
    temperature: float = 0.7,
    top_p: float = 0.9,
    max_tokens: int = 5000,
    format_fail_score: float = 0.0,
    format_score: Optional[float] = None,
    fallback_score: Optional[float] = None,
    clamp_out_of_range: bool = False,
    aggregate: Literal["weighted_mean", "sum"] = "weighted_mean",
    score_mode: Literal["text", "logprobs"] = "text",
    top_logprobs: int = 10,
    judge_mode: Literal["single", "groupwise"] = "single",
    max_concurrency: Annotated[int, Field(ge=1)] = 16,
    requests_per_minute: Optional[float] = None,
    tokens_per_minute: Optional[float] = None,
    timeout: Annotated[float, Field(gt=0)] = 120.0,
    max_retries: Annotated[int, Field(ge=0)] = 5,
    cache: bool = True,
    cache_path: Optional[str] = None,
    price_per_prompt_token: Optional[float] = None,
    price_per_completion_token: Optional[float] = None,
    max_failure_share: Annotated[float, Field(ge=0, le=1)] = 0.5,
    max_failed_steps: Optional[int] = 5,
    metric_name: str = "generic_llm_reward",
) -> "LLMJudgeReward":
    """Grade each completion with an LLM judge against the rubric in `system_prompt_path`.

    Judge: eval_llm_name (model), eval_llm_base_url (OpenAI-compatible URL, or `local:<model>` for an
    in-process model such as `local:smollm2-gguf`), eval_llm_api_key_env (name of the environment
    variable holding the key; preferred) or eval_llm_api_key (a literal key, redacted everywhere).
    eval_llm_mode: the seed's 'api' (or unset). Rubric: score_types [{name, type: score|autofail, min,
    max, weight}], judged with temperature / top_p / max_tokens. Reward: aggregate 'weighted_mean'
    (normalised, in [0, 1]) or 'sum' (the seed's raw sum); score_mode 'logprobs' takes the expectation
    over the judge's top logprobs on each score token; judge_mode 'groupwise' judges all completions of
    one prompt in one call. Failures: fallback_score (None leaves the completion out; the seed's
    format_score is read as this), clamp_out_of_range, max_failure_share / max_failed_steps (stop the
    run with JudgeFailureError). Format gate: completions failing the cot_start/cot_end layout get
    format_fail_score without a judge call. Throughput: max_concurrency, requests_per_minute,
    tokens_per_minute (per endpoint), timeout (seconds per call), max_retries. cache / cache_path: sqlite
    cache of answers. price_per_*_token: log judge/<metric_name>/cost.
    Types and ranges are checked by @typed_arguments: `cache: "false"` (or "no", "off", 0) reads as false;
    a number where text is expected (an unquoted numeric key) is an error, not converted.
    """
    if eval_llm_mode not in SEED_MODES:
        raise ConfigError(f"{metric_name}: eval_llm_mode {eval_llm_mode!r} is not supported; use 'api' or leave it out")
    try:
        criteria = criteria_from_config(score_types)
    except ValueError as error:
        raise ConfigError(f"{metric_name}: {error}") from None
    reserved = [c.name for c in criteria if RESERVED_TAG.fullmatch(c.name)]
    if reserved:
        raise ConfigError(f"{metric_name}: score_types name(s) {reserved} are reserved (the parser blanks <think> "
                          "blocks, and <response_N> numbers groupwise answers): rename the criterion")
    prompt = load_prompt(system_prompt_path)
    missing = missing_tags(prompt, [c.name for c in criteria])
    if missing:
        raise ConfigError(f"{metric_name}: score_types {missing} never appear as a tag in {prompt.path}, so the judge is "
                          f"never asked for them: add e.g. <{missing[0]}>N</{missing[0]}> to the prompt's answer format, "
                          "or fix the name / the system_prompt_path")
    if format_score is not None and fallback_score is None:
        logger.info("%s: format_score=%s (seed name) is the score of a failed judge call (fallback_score)",
                    metric_name, format_score)
        fallback_score = format_score

    if is_local(eval_llm_base_url):
        backend: Any = LocalJudge(eval_llm_base_url[len(LOCAL_PREFIX):])
        check_local_model_available(metric_name, eval_llm_base_url, *backend.source)
        model = eval_llm_name or eval_llm_base_url
    else:
        if not eval_llm_base_url or not eval_llm_name:
            raise ConfigError(f"{metric_name}: set eval_llm_name and eval_llm_base_url (an OpenAI-compatible URL "
                              f"or {LOCAL_PREFIX}<model>), on the reward or on its dataset")
        check_base_url(metric_name, eval_llm_base_url)
        api_key = _api_key(metric_name, eval_llm_api_key_env, eval_llm_api_key)
        limits = Limits(max_concurrency, requests_per_minute, tokens_per_minute).per_process(world_size())
        backend = get_client(eval_llm_base_url, api_key, limits)
        model = eval_llm_name

    sampling: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
    if score_mode == "logprobs":
        sampling.update(logprobs=True, top_logprobs=top_logprobs)
    return LLMJudgeReward(
        name=metric_name, prompt=prompt, criteria=criteria, backend=backend, model=model, sampling=sampling,
        cot_start=cot_start, cot_end=cot_end, format_fail_score=format_fail_score, fallback_score=fallback_score,
        clamp=clamp_out_of_range, aggregate=aggregate, groupwise=judge_mode == "groupwise",
        timeout=timeout, max_retries=max_retries,
        cache_path=(cache_path or DEFAULT_CACHE_PATH) if cache else None,
        prices=(price_per_prompt_token, price_per_completion_token),
        watch=FailureWatch(metric_name, max_failure_share, max_failed_steps),
    )


def check_base_url(name: str, url: str) -> None:
    """eval_llm_base_url must be http(s)://host[:port][/path]: a typo here would show only as connection errors."""
    problem = None
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # ValueError when out of 0-65535 or not a number
    except ValueError as error:
        parts, port, problem = None, None, str(error)
    if parts is not None and parts.scheme not in ("http", "https"):
        problem = (f"the scheme must be http or https, got '{parts.scheme}'" if parts.scheme else
                   "no scheme: write http://host:port/v1 or https://host/v1")
    elif parts is not None and not parts.hostname:
        problem = "no host name"
    elif port == 0:
        problem = "port 0 is not a port"
    if problem:
        raise ConfigError(f"{name}: eval_llm_base_url '{url}' is not a usable URL ({problem}); use an OpenAI-compatible "
                          f"base URL such as https://api.openai.com/v1, or {LOCAL_PREFIX}<model> for an in-process judge")


def check_local_model_available(name: str, url: str, name_or_path: str, gguf_file: Optional[str]) -> None:
    """A `local:<hub id>` judge must be in the local Hugging Face cache, or exist on the hub when online.

    Checked when the run starts, so a typo is not found only when the first judge call loads the model.
    """
    if Path(name_or_path).exists():
        return
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        if isinstance(try_to_load_from_cache(name_or_path, gguf_file or "config.json"), str):
            return
        if constants.HF_HUB_OFFLINE:
            raise ConfigError(f"{name}: {url}: '{name_or_path}' is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                              "is set: download it first (huggingface-cli download), or give a local path")
        model_info(name_or_path, timeout=10)
    except HFValidationError as error:
        raise ConfigError(f"{name}: {url}: '{name_or_path}' is neither a local path nor a hub id ({error})") from None
    except ConfigError:
        raise
    except Exception as error:  # not found on the hub, or the hub cannot be reached: either way it cannot load
        raise ConfigError(f"{name}: {url}: '{name_or_path}' is not a local path, not in the local Hugging Face cache, "
                          f"and could not be found on the hub ({type(error).__name__}): check the name, or download "
                          "it first") from None


def _api_key(name: str, env: Optional[str], literal: Optional[str]) -> Optional[str]:
    """The judge's key: from the environment variable `env` (preferred) or the literal, surrounding whitespace
    stripped (a trailing newline from `echo` or a file would make every call fail as a connection error)."""
    if env:
        if not ENV_NAME.fullmatch(env):  # the key itself put here: never echo it
            raise ConfigError(f"{name}: eval_llm_api_key_env must name an environment variable (letters, digits, _), "
                              "and its value does not look like a variable name (is it the key itself?): put a "
                              "literal key in eval_llm_api_key, or its variable's name in eval_llm_api_key_env")
        value = (os.environ.get(env) or "").strip()
        if not value:  # named only when it looks like a variable's name (OPENAI_API_KEY), not a key (gsk_8fJx...)
            named = env if env.isupper() else "a variable (its name is not shown: it may be the key itself)"
            raise ConfigError(f"{name}: eval_llm_api_key_env names {named}, which is not set (or blank) in the environment")
        where = f"the environment variable {env}"
    else:
        value, where = (literal or "").strip(), "eval_llm_api_key"
        if not value:
            return None
    if any(ch.isspace() for ch in value) or not value.isprintable():
        raise ConfigError(f"{name}: the API key in {where} contains spaces or control characters inside it: "
                          "check that it holds exactly one key")
    register_secret(value)
    return value


class LLMJudgeReward:
    """The async reward TRL calls once per step: `await reward(prompts, completions, answer=[...], ...)`."""

    def __init__(self, *, name: str, prompt: JudgePrompt, criteria: list[Criterion], backend: Any, model: str,
                 sampling: dict, cot_start: Optional[str], cot_end: Optional[str], format_fail_score: float,
                 fallback_score: Optional[float], clamp: bool, aggregate: str, groupwise: bool, timeout: float,
                 max_retries: int, cache_path: Optional[str], prices: tuple, watch: FailureWatch):
        self.__name__ = name
        self.name, self.prompt, self.criteria, self.backend, self.model = name, prompt, criteria, backend, model
        self.sampling, self.cot_start, self.cot_end = sampling, cot_start, cot_end
        self.format_fail_score, self.fallback_score, self.clamp = format_fail_score, fallback_score, clamp
        self.aggregate, self.groupwise, self.timeout, self.max_retries = aggregate, groupwise, timeout, max_retries
        self.cache_path, self.prices, self.watch = cache_path, prices, watch
        self._cache: Optional[JudgeCache] = None
        self.tag_names = [c.name for c in criteria]
        self.last_metrics: dict[str, float] = {}

    @property
    def cache(self) -> Optional[JudgeCache]:
        """The answer cache, opened (and its file created) at the first judge call: a dry run writes nothing."""
        if self._cache is None and self.cache_path is not None:
            self._cache = open_cache(self.cache_path)
        return self._cache

    def __repr__(self) -> str:
        return (f"LLMJudgeReward(name={self.name!r}, model={self.model!r}, backend={self.backend!r}, "
                f"prompt={str(self.prompt.path)!r}, mode={'groupwise' if self.groupwise else 'single'})")

    async def __call__(self, prompts: Sequence[Any], completions: Sequence[str], **columns: Any) -> list[Optional[float]]:
        texts = list(completions)
        answers = list(columns.get("answer") or [""] * len(texts))
        rewards: list[Optional[float]] = [None] * len(texts)
        stats = StepStats()
        groups: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if not passes_cot_format(text, self.cot_start, self.cot_end):
                rewards[i] = self.format_fail_score
                stats.format_gated += 1
                continue
            key = str(i)
            if self.groupwise:  # completions of one prompt (same messages and reference) share one judge call
                key = json.dumps([_messages(prompts[i]), answers[i] or ""], sort_keys=True, default=str)
            groups.setdefault(key, []).append(i)
        results = await asyncio.gather(*(
            self._judge(_messages(prompts[g[0]]), [texts[i] for i in g], answers[g[0]] or "", stats)
            for g in groups.values()
        ))
        for indices, scores in zip(groups.values(), results):
            for i, score in zip(indices, scores):
                rewards[i] = score
        self.last_metrics = stats.metrics(*self.prices)
        log_step(self.name, stats, self.prices, columns.get("log_metric"))
        if stats.failed:
            logger.warning("judge '%s': %d/%d judged completions got no score this step; last error: %s",
                           self.name, stats.failed, stats.judged, stats.last_error)
        self.watch.observe(stats)
        return rewards

    async def _judge(self, prompt_messages: list[dict], texts: list[str], answer: str,
                     stats: StepStats) -> list[Optional[float]]:
        """Judge one completion (or, groupwise, all of one prompt's) and return their rewards."""
        outputs = [strip_reasoning(text, self.cot_start, self.cot_end) for text in texts]
        messages = self.prompt.render(prompt_messages, outputs, answer, self.tag_names, groupwise=self.groupwise)
        request = JudgeRequest(self.model, messages, self.sampling)
        cached = self.cache.get(request) if self.cache is not None else None
        if cached is not None:
            outcome = CallOutcome(response=cached, cached=True)
        else:
            outcome = await self.backend.complete(request, timeout=self.timeout, max_retries=self.max_retries)
        prefill = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
        verdicts = self._parse(outcome, len(texts), prefill)
        stats.add_call(outcome, verdicts)
        scores = [combine(v, self.criteria, self.aggregate) for v in verdicts] if verdicts else [None] * len(texts)
        stats.add_judged(len(texts), sum(s is None for s in scores), outcome.cached)
        if self.cache is not None and not outcome.cached and verdicts and all(v.ok for v in verdicts):
            self.cache.put(request, outcome.response)
        return [self.fallback_score if s is None else s for s in scores]

    def _parse(self, outcome: CallOutcome, count: int, prefill: str) -> list[Verdict]:
        """Verdicts from the judge's answer; a prefill (trailing assistant message) is read as its start."""
        if outcome.response is None:
            return []
        text, logprobs = outcome.response.text, outcome.response.logprobs
        if prefill and text is not None:
            text = prefill + text
            if logprobs:
                logprobs = [{"token": prefill, "logprob": 0.0, "top_logprobs": []}, *logprobs]
        if self.groupwise:
            return parse_group_judgement(text, self.criteria, count, clamp=self.clamp, logprobs=logprobs)
        return [parse_judgement(text, self.criteria, clamp=self.clamp, logprobs=logprobs)]


def _messages(prompt: Union[str, list]) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
