"""Steps per second of `ActiveLearner` on one device vs two replicas (informational).

Splits the CPU into two logical devices and times `fit()` on Fashion-MNIST
(learnability, Gumbel sampling, global super-batch 256, b = 128) without a
strategy, with `OneDeviceStrategy` and with `MirroredStrategy` over both logical devices
(local and global selection, with and without XLA scoring). On one machine the
two logical CPU devices share the same cores, so this measures the overhead of
replication and of the all-gather, not a speed-up; run it on several GPUs for
that.

Example:

```
python tools/distribute_benchmark.py --steps 30 --out benchmarks/results/distribute.json
```
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from active_keras import quiet  # noqa: E402

quiet.start(verbose=quiet.verbose_requested())  # TensorFlow's start-up log off the console.

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from active_keras import ActiveLearner  # noqa: E402
from active_keras.data.classification import ImageClassificationData  # noqa: E402
from active_keras.models import cnn  # noqa: E402
from active_keras.training import distribute  # noqa: E402


def run(strategy_name, scope, jit_scoring, data, super_batch, steps, warmup):
    if strategy_name == "default":  # No strategy at all: Keras's usual path.
        strategy = tf.distribute.get_strategy()
        train = data.train_dataset(super_batch)
    else:
        strategy = distribute.make_strategy(
            strategy_name, devices=["/cpu:0"] if strategy_name == "one_device" else None
        )
        train = distribute.classification_super_batches(strategy, data, super_batch)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        learner = cnn.cnn_classifier(data.input_shape, 10, widths=(32, 64), dense_units=128)
        reference = cnn.cnn_classifier(
            data.input_shape, 10, widths=(8, 16), dense_units=32, name="reference"
        )
        model = ActiveLearner(
            learner,
            reference,
            policy="learnability",
            selection="sample",
            selection_scope=scope,
            jit_scoring=jit_scoring,
            seed=0,
        )
        model.compile(
            optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
    model.fit(train, steps_per_epoch=warmup, epochs=1, verbose=0)  # Tracing, compilation.
    start = time.perf_counter()
    model.fit(train, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    return {
        "strategy": strategy_name,
        "replicas": strategy.num_replicas_in_sync,
        "selection_scope": scope,
        "jit_scoring": jit_scoring,
        "steps": steps,
        "seconds": round(seconds, 3),
        "steps_per_second": round(steps / seconds, 3),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--super_batch", type=int, default=256)
    parser.add_argument("--out", default="benchmarks/results/distribute.json")
    args = parser.parse_args()
    data = ImageClassificationData("fashion_mnist")
    configs = [
        ("default", "local", False),
        ("one_device", "local", False),
        ("mirrored", "local", False),
        ("mirrored", "global", False),
        ("mirrored", "global", True),
    ]
    results, load_before = [], os.getloadavg()
    for name, scope, jit in configs:
        results.append(run(name, scope, jit, data, args.super_batch, args.steps, args.warmup))
        print(json.dumps(results[-1]))
    report = {
        "benchmark": "ActiveLearner fit() steps/s, one device vs two replicas",
        "data": "fashion_mnist",
        "super_batch": args.super_batch,
        "sub_batch": args.super_batch // 2,
        "learner": "cnn widths=(32, 64) dense=128",
        "reference_and_actor": "cnn widths=(8, 16) dense=32",
        "policy": "learnability, Gumbel sampling",
        "devices": "two logical CPU devices sharing the same physical cores",
        # Other jobs on a shared machine skew the timings: the 1-min load averages.
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "results": results,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
