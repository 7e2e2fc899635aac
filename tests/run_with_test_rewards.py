"""run_augmentoolkit.py with the tests' own rewards registered, for launchers that run a script (torchrun).

    torchrun --standalone --nproc_per_node 2 -- tests/run_with_test_rewards.py --node grpo-rl-pipeline --config c.yaml
"""

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import run_augmentoolkit  # noqa: E402
import slow_reward  # noqa: E402,F401  (registers the test rewards)
import stop_rewards  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(run_augmentoolkit.main(sys.argv[1:]))
