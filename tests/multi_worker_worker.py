"""One worker of a MultiWorkerMirroredStrategy run of `ActiveLearner`.

Reads the cluster from `TF_CONFIG`, builds the strategy with
`active_keras.training.distribute.make_strategy`, trains an `ActiveLearner` (global
Gumbel-top-k selection) for a few steps on the digits data, each worker reading
its own shard, and saves the learner and actor weights, the sampling seed state
and the example ids of its first batch to `--out` (an `.npz`).

Each worker seeds its initialisation differently on purpose: identical results
then show that the strategy broadcast worker 0's initial values.

Example (two shells, or see `tests/test_distribute.py`):

```
TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:23456", "127.0.0.1:23457"]},
            "task": {"type": "worker", "index": 0}}' \\
    python tests/multi_worker_worker.py --out /tmp/worker0.npz
```
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import keras  # noqa: E402

from active_keras import ActiveLearner  # noqa: E402
from active_keras.data.classification import ImageClassificationData  # noqa: E402
from active_keras.models import cnn  # noqa: E402
from active_keras.training import distribute  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--super_batch", type=int, default=32)
    args = parser.parse_args()
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]

    strategy = distribute.make_strategy("multi_worker_mirrored")
    data = ImageClassificationData("digits", heldout_size=200)
    train = distribute.classification_super_batches(strategy, data, args.super_batch)
    first_ids = strategy.experimental_local_results(next(iter(train))[2]["example_id"])

    keras.utils.set_random_seed(100 + task)  # Differs per worker on purpose.
    with strategy.scope():
        learner = cnn.cnn_classifier((8, 8, 1), 10, widths=(8,), dense_units=16, name="learner")
        reference = cnn.cnn_classifier((8, 8, 1), 10, widths=(4,), dense_units=8, name="ref")
        model = ActiveLearner(
            learner,
            reference,
            policy="learnability",
            selection="sample",
            selection_scope="global",
            seed=None,  # A random seed per worker; the strategy must agree on one.
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    history = model.fit(train, steps_per_epoch=args.steps, epochs=1, verbose=0)
    arrays = {f"learner_{i}": w for i, w in enumerate(learner.get_weights())}
    arrays.update({f"actor_{i}": w for i, w in enumerate(model.actor.get_weights())})
    arrays["seed_state"] = np.asarray(model.seed_generator.state.numpy())
    arrays["first_ids"] = np.concatenate([t.numpy() for t in first_ids])
    arrays["loss"] = np.asarray(history.history["loss"][-1])
    arrays["replicas"] = np.asarray(strategy.num_replicas_in_sync)
    np.savez(args.out, **arrays)
    tf.print("worker", task, "done, loss", history.history["loss"][-1])


if __name__ == "__main__":
    main()
