"""A loopback OpenAI-compatible judge server for tests and benchmarks: real sockets on 127.0.0.1.

    with JudgeServer(scores_reply(helpfulness=7), latency=0.3) as server:
        ... eval_llm_base_url=server.base_url ...
        server.requests          # every request body received (parsed JSON)
        server.max_in_flight     # the most requests it was serving at once

A responder maps (request body, call index) to a Reply: content, status, headers, delay, a dropped
connection, a raw (malformed) body, logprobs. Helpers build the usual ones and the faults.
Threaded: every request gets its own thread, so latency overlaps like a real API's.
"""

from __future__ import annotations

import json
import math
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional


@dataclass
class Reply:
    content: Optional[str] = ""
    status: int = 200
    headers: dict = field(default_factory=dict)
    delay: float = 0.0               # seconds before answering (on top of the server's latency)
    drop: bool = False               # close the connection without answering
    raw_body: Optional[bytes] = None  # sent as is with status 200 (malformed JSON and the like)
    logprobs: Optional[list] = None   # choices[0].logprobs.content
    skip_latency: bool = False        # answer at once (rate limiters reject fast)
    error_message: str = ""           # the error body's message for a non-200 status


Responder = Callable[[dict, int], Reply]


class JudgeServer:
    def __init__(self, responder: Optional[Responder] = None, latency: float = 0.0):
        self.responder: Responder = responder or always(Reply("<score>5</score>"))
        self.latency = latency
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "JudgeServer":
        owner = self

        class Handler(_Handler):
            server_owner = owner

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default 5 makes a burst of connections wait for SYN retries
            daemon_threads = True
            block_on_close = False

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "JudgeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _record(self, body: dict, headers: dict) -> int:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return len(self.requests) - 1

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server_owner: JudgeServer

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": "judge", "object": "model"}]}).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        owner = self.server_owner
        body = json.loads(raw or b"{}")
        index = owner._record(body, {key.lower(): value for key, value in self.headers.items()})
        try:
            reply = owner.responder(body, index)
            wait = reply.delay + (0.0 if reply.skip_latency else owner.latency)
            if wait:
                time.sleep(wait)
            if reply.drop:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if reply.raw_body is not None:
                self._send(200, reply.raw_body, reply.headers)
            elif reply.status != 200:
                message = reply.error_message or f"scripted status {reply.status}"
                error = {"error": {"message": message, "type": "scripted", "code": reply.status}}
                self._send(reply.status, json.dumps(error).encode(), reply.headers)
            else:
                self._send(200, json.dumps(_completion(body, reply)).encode(), reply.headers)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client gave up (timeout) or the connection was dropped on purpose
        finally:
            owner._done()

    def _send(self, status: int, payload: bytes, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        self.wfile.write(payload)


def _completion(body: dict, reply: Reply) -> dict:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    choice: dict = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply.content}}
    if reply.logprobs is not None and body.get("logprobs"):
        choice["logprobs"] = {"content": reply.logprobs}
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "judge"),
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_chars // 4,
            "completion_tokens": len(reply.content or "") // 4,
            "total_tokens": prompt_chars // 4 + len(reply.content or "") // 4,
        },
    }


# -------------------------------------------------------------------------------------------- responders


def always(reply: Reply) -> Responder:
    return lambda body, index: reply


def sequence(*replies: Reply, then: Optional[Reply] = None) -> Responder:
    """The i-th call gets replies[i]; later calls get `then` (default: the last reply)."""
    return lambda body, index: replies[index] if index < len(replies) else (then or replies[-1])


def scores_text(**scores) -> str:
    return "Reasoning done.\n" + "\n".join(f"<{name}>{value}</{name}>" for name, value in scores.items())


def scores_reply(**scores) -> Reply:
    return Reply(scores_text(**scores))


def with_faults(base: Responder, fault: Reply, rate: float, seed: int = 0) -> Responder:
    """`base`, except that a seeded `rate` share of calls get `fault` (first attempts and retries alike)."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def respond(body: dict, index: int) -> Reply:
        with lock:
            hit = rng.random() < rate
        return fault if hit else base(body, index)

    return respond


def rate_limited(retry_after: float = 0.5) -> Reply:
    return Reply(status=429, headers={"Retry-After": retry_after}, skip_latency=True)


def last_user_text(body: dict) -> str:
    return next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")


def echo(suffix: str = "") -> Responder:
    """Repeat the judge prompt's last user message back (a confused judge), then `suffix`."""
    return lambda body, index: Reply(last_user_text(body) + suffix)


def by_response(score_of: Callable[[str], dict]) -> Responder:
    """Score the fenced response(s) in the prompt with `score_of(response text) -> {tag: value}`.

    One fenced response: plain tags. Several (groupwise): one <response_k> block each. No fence: the
    whole last user message is the response.
    """

    def respond(body: dict, index: int) -> Reply:
        found = re.findall(r"<<<BEGIN RESPONSE( \d+)?>>>\n(.*?)\n<<<END RESPONSE", last_user_text(body), re.S)
        if not found:  # a client that does not fence (the naive baseline): score the whole message
            return scores_reply(**score_of(last_user_text(body)))
        if len(found) == 1 and not found[0][0]:
            return scores_reply(**score_of(found[0][1]))
        blocks = [
            f"<response_{label.strip()}>\n{scores_text(**score_of(text))}\n</response_{label.strip()}>"
            for label, text in found
        ]
        return Reply("Comparing them.\n" + "\n".join(blocks))

    return respond


def logprob_tokens(content: str, alternatives: dict[str, dict[str, float]]) -> list[dict]:
    """OpenAI-style logprobs for `content`: numbers are single tokens; a token equal to a key of
    `alternatives` (first occurrence each) gets those {token: probability} as its top_logprobs."""
    pieces = re.findall(r"<[^>]*>|\d+(?:\.\d+)?|\s+|[^<\d\s]+", content)
    assert "".join(pieces) == content
    tokens, seen = [], set()
    for piece in pieces:
        top = [{"token": piece, "logprob": 0.0}]
        if piece in alternatives and piece not in seen:
            seen.add(piece)
            top = [{"token": t, "logprob": math.log(p)} for t, p in alternatives[piece].items()]
        chosen = next((t["logprob"] for t in top if t["token"] == piece), 0.0)
        tokens.append({"token": piece, "logprob": chosen, "bytes": None, "top_logprobs": top})
    return tokens


# ------------------------------------------------------------------------------------- as its own process


def main(argv: Optional[list] = None) -> None:
    """Serve in a process of its own (benchmarks: the client then has the GIL to itself).

    python tests/judge_server.py --latency 1.0 --fault-rate 0.1 --retry-after 0.5
    prints "PORT <n>" once listening; answers every response with <score>7</score> (and a plain
    <score> per <response_k> block for groupwise prompts); serves until stdin closes.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of calls answered 429")
    parser.add_argument("--retry-after", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    responder = by_response(lambda text: {"score": 7})
    if args.fault_rate:
        responder = with_faults(responder, rate_limited(args.retry_after), args.fault_rate, args.seed)
    with JudgeServer(responder, latency=args.latency) as server:
        print(f"PORT {server._server.server_address[1]}", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()


# ------------------------------------------------------------------------------------ a reward pointed at it

HELPFULNESS = [{"name": "helpfulness", "type": "score", "min": 1, "max": 10}]


def make_reward(base_url: str, tmp_path, score_types: Optional[list] = None, prompt: Optional[list] = None, **kwargs):
    """A generic_llm_reward judged at `base_url`, with a small prompt and a cache file in `tmp_path`."""
    import yaml

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.reward import generic_llm_reward

    prompt_path = tmp_path / "judge_prompt.yaml"
    if not prompt_path.exists() or prompt is not None:
        prompt_path.write_text(yaml.safe_dump(prompt or [
            {"role": "system", "content": "You grade answers."},
            {"role": "user", "content": "Question: {input_text}\nReference: {answer}\nAnswer:\n{output_text}\n"
                                        "Grade it as <helpfulness>N</helpfulness> (1-10)."},
        ]))
    options = dict(system_prompt_path=str(prompt_path), eval_llm_name="judge", eval_llm_base_url=base_url,
                   eval_llm_api_key="sk-test", cache_path=str(tmp_path / "judge_cache.sqlite"), max_retries=2, timeout=5)
    options.update(kwargs)
    return generic_llm_reward(score_types=score_types or HELPFULNESS, **options)
