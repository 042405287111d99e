"""Selection strength: the logged score spread, and what the shipped temperature does with it."""

import os
import re
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import numpy as np
import tensorflow as tf

from active_keras.analysis import selection_log
from active_keras.selection import selectors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The smallest per-step score std (in logit units, ClipTask.example_loss =
# 'negative_logit') that the shipped configuration logged over a 300-update run:
#   python -m active_keras.main --gin_file=gin/activeclip.gin --model_dir=/tmp/spread \
#     --gin_bindings="run.num_steps = 300" --gin_bindings="run.eval_every = 50"
# At the shipped T = 4: train_score_std 4.46, 4.32, 4.20, 4.21, 4.10, 4.13 at steps 50..300,
# and the selection log's selected_in_top_half 0.72-0.76. At the earlier T = 1: 4.46 down to
# 4.02 (selected_in_top_half 0.90-0.94). In raw `-z_img . z_txt` units it was 0.32-0.38.
SHIPPED_SCORE_STD = 4.0
RAW_SCORE_STD = 0.32
B, K = 128, 64


def shipped(name):
    """An `ActiveLearner.<name>` number bound in gin/activeclip.gin."""
    with open(os.path.join(ROOT, "gin", "activeclip.gin")) as f:
        return float(re.search(rf"^ActiveLearner\.{name} = (\S+)$", f.read(), re.M).group(1))


def top_half_share(score_std, temperature, draws=300, seed=0):
    """Mean share of `K` Gumbel-top-k picks of `B` normal scores that rank in the top half."""
    rng = np.random.default_rng(seed)
    generator = keras.random.SeedGenerator(seed)
    shares = []
    for _ in range(draws):
        scores = rng.normal(0.0, score_std, B).astype(np.float32) if score_std else np.zeros(B)
        index = selectors.sample(tf.constant(scores, tf.float32), K, temperature, generator)
        mask = np.zeros(B, bool)
        mask[index.numpy()] = True
        shares.append(selection_log.score_spread([scores], [mask])["selected_in_top_half"])
    return float(np.mean(shares))


class SelectionStrengthTest(tf.test.TestCase):
    def test_shipped_temperature_selects_clearly_more_of_the_top_half_than_uniform(self):
        temperature = shipped("temperature")
        uniform = top_half_share(0.0, temperature)
        shipped_share = top_half_share(SHIPPED_SCORE_STD, temperature)
        self.assertAllClose(uniform, 0.5, atol=0.02)  # Ties are broken fairly.
        self.assertGreater(shipped_share, uniform + 0.2)
        # The raw units the scores had before: barely more than a uniform draw.
        self.assertLess(top_half_share(RAW_SCORE_STD / temperature, 1.0), uniform + 0.1)

    def test_score_spread_of_a_record(self):
        scores = [np.array([4.0, 3.0, 2.0, 1.0]), np.array([0.0, 0.0, 1.0, -1.0])]
        masks = [np.array([True, False, False, True]), np.array([True, True, False, False])]
        spread = selection_log.score_spread(scores, masks)
        self.assertAllClose(spread["score_std"], np.mean([np.std(s) for s in scores]))
        self.assertAllClose(spread["score_min"], (1.0 - 1.0) / 2)
        self.assertAllClose(spread["score_max"], (4.0 + 1.0) / 2)
        # Batch 1: 4.0 is in the top half, 1.0 is not. Batch 2: the two tied zeros share
        # the one top-half place left after 1.0: half a place each.
        self.assertAllClose(spread["selected_in_top_half"], (1 + 0.5 + 0.5) / 4)


if __name__ == "__main__":
    tf.test.main()
