"""The judge's sqlite cache shared by several processes (one file for every rank of a multi-process run)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WRITER = """
import sys, time
sys.path.insert(0, {root!r})
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.cache import open_cache
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.client import JudgeRequest, JudgeResponse
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # every writer opens the new file at the same instant
cache = open_cache({path!r})
for i in range(50):
    request = JudgeRequest("judge", [{{"role": "user", "content": f"{{sys.argv[1]}}-{{i}}"}}], {{"temperature": 0}})
    cache.put(request, JudgeResponse(text=str(i)))
    assert cache.get(request).text == str(i)
"""


def test_several_processes_create_and_fill_one_new_cache_file_at_once(tmp_path):
    path = tmp_path / "cache.sqlite"
    code = WRITER.format(root=str(ROOT), path=str(path))
    start = str(time.time() + 3.0)
    writers = [subprocess.Popen([sys.executable, "-c", code, str(n), start], stderr=subprocess.PIPE, text=True)
               for n in range(6)]
    errors = [writer.communicate(timeout=120)[1] for writer in writers]
    assert all(writer.returncode == 0 for writer in writers), errors
    sys.path.insert(0, str(ROOT))
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.cache import JudgeCache

    assert JudgeCache(path).count() == 6 * 50
