"""The canonical training entry point: reference, then the learner, for any task.

Everything is configured with gin (see `gin/classact.gin`); `active_keras.main`
is the command line around `run()`.

Example:

```python
import gin
from active_keras import train

gin.parse_config_files_and_bindings(["gin/classact.gin"], ["train.num_steps = 100"])
curve = train.run("/tmp/classact")
```
"""

import os

import gin
import keras

from active_keras import callbacks as callbacks_lib
from active_keras import flops
from active_keras.active_learner import ActiveLearner
from active_keras.selection import policies


@gin.configurable
def make_optimizer(name="adam", learning_rate=1e-3, schedule="constant", num_steps=None,
                   warmup_steps=0, weight_decay=None):  # fmt: skip
    """An optimizer with a constant or warm-up + cosine learning rate.

    Args:
        name: "adam", "adamw" or "sgd".
        learning_rate: Peak learning rate.
        schedule: "constant" or "cosine" (decays to 0 over `num_steps`).
        num_steps: Length of the cosine schedule.
        warmup_steps: Linear warm-up steps for "cosine".
        weight_decay: For "adamw".
    """
    if schedule == "cosine":
        if not num_steps:
            raise ValueError("make_optimizer: the cosine schedule needs num_steps.")
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else learning_rate, decay_steps=num_steps - warmup_steps,
            warmup_target=learning_rate if warmup_steps else None, warmup_steps=warmup_steps,
        )  # fmt: skip
    elif schedule == "constant":
        lr = learning_rate
    else:
        raise ValueError(f"Unknown learning-rate schedule {schedule!r}; use constant or cosine.")
    if name == "adam":
        return keras.optimizers.Adam(lr)
    if name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=weight_decay or 1e-4)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9)
    raise ValueError(f"Unknown optimizer {name!r}; use adam, adamw or sgd.")


@gin.configurable
def train_reference(task, path, num_steps=2000, batch_size=128, learning_rate=1e-3,
                    split="heldout", seed=0, jit_compile=True):  # fmt: skip
    """Trains the small reference model on `split` (clean held-out data) and saves it.

    Returns:
        The trained model; its file is `path`.
    """
    keras.utils.set_random_seed(seed)
    model = task.build_small(name="reference")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=task.loss(),
                  metrics=task.metrics(), jit_compile=jit_compile)  # fmt: skip
    ds = task.dataset(split, batch_size, shuffle=True, repeat=True, seed=seed)
    ds = ds.map(lambda x, y, meta: (x, y))
    model.fit(ds, steps_per_epoch=num_steps, epochs=1, verbose=2,
              callbacks=[callbacks_lib.StopOnNaN()])  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model.save(path)
    print(f"reference: {task.primary_metric} {task.evaluate(model)[task.primary_metric]:.4f}, "
          f"saved to {path}", flush=True)  # fmt: skip
    return model


def load_or_train_reference(task, path):
    """Loads the reference from `path`, training and saving it first if missing."""
    if path and os.path.exists(path):
        model = keras.models.load_model(path, compile=False)
        print(f"reference: loaded {path}", flush=True)
    else:
        if not path:
            raise ValueError("The policy needs a reference: bind train.reference_path.")
        model = train_reference(task, path)
    task.check_model(model, f"reference ({path})")
    return model


def _writable_dir(model_dir):
    try:
        os.makedirs(model_dir, exist_ok=True)
        probe = os.path.join(model_dir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise PermissionError(
            f"model_dir {model_dir!r} is not writable ({e.strerror}); pass a writable "
            "--model_dir."
        ) from e


def write_operative_config(model_dir):
    with open(os.path.join(model_dir, "operative_config.gin"), "w") as f:
        f.write(gin.operative_config_str())


@gin.configurable(denylist=["model_dir"])
def run(model_dir, task=gin.REQUIRED, mode="train", policy="learnability", selection="sample",
        keep_fraction=0.5, temperature=1.0, super_batch_size=128, num_steps=3000,
        eval_every=250, reference_path=None, online_reference=False, optimizer_fn=make_optimizer,
        jit_compile=True, seed=0, verbose=2):  # fmt: skip
    """Trains the reference (mode "reference") or a learner (mode "train").

    The learner run writes into `model_dir`: `metrics.json` (the evaluated
    curve with the FLOP ledger), `operative_config.gin`, TensorBoard logs in
    `tb/`, and the trained learner as `learner.keras`.

    Args:
        model_dir: Output directory.
        task: The task (for example `@ClassificationTask()`).
        mode: "train" or "reference".
        policy: Scoring policy name (see `active_keras.selection.policies`).
        selection: "topk" or "sample".
        keep_fraction: b / B.
        temperature: Sampling temperature.
        super_batch_size: B.
        num_steps: Learner updates.
        eval_every: Steps between evaluations (a multiple-of-steps epoch).
        reference_path: `.keras` file of the reference; trained if missing.
        online_reference: Train the reference online (ClassAct-Online).
        optimizer_fn: Makes the learner's optimizer (the actor's is a copy).
        jit_compile: XLA-compile the train step (one device).
        seed: Seed of weights, data order and sampling.
        verbose: Keras fit verbosity.

    Returns:
        The curve: a list of dicts, one per evaluation.
    """
    _writable_dir(model_dir)
    if mode == "reference":
        train_reference(task, reference_path)
        write_operative_config(model_dir)
        return []
    if mode != "train":
        raise ValueError(f"Unknown mode {mode!r}; use train or reference.")
    if num_steps % eval_every:
        raise ValueError(f"num_steps={num_steps} must be a multiple of eval_every={eval_every}.")
    policy = policies.get(policy)
    needs_reference = "reference" in policy.requires or online_reference
    if online_reference:
        reference = task.build_small(name="reference")
    elif needs_reference:
        reference = load_or_train_reference(task, reference_path)
    else:
        reference = None

    keras.utils.set_random_seed(seed)
    learner = task.build_learner()
    actor = task.build_small(name="actor") if "actor" in policy.requires else None
    model = ActiveLearner(
        learner, reference=reference, actor=actor, policy=policy, selection=selection,
        keep_fraction=keep_fraction, temperature=temperature,
        super_batch_size=super_batch_size, online_reference=online_reference,
        example_loss=task.example_loss, seed=seed,
    )  # fmt: skip
    model.compile(optimizer=optimizer_fn(num_steps=num_steps), loss=task.loss(),
                  metrics=task.metrics(), jit_compile=jit_compile)  # fmt: skip
    ledger = flops.FlopLedger.for_learner(model, super_batch_size)
    facts = {
        "policy": policy.name, "selection": selection, "keep_fraction": keep_fraction,
        "temperature": temperature, "super_batch_size": super_batch_size,
        "sub_batch_size": ledger.sub_batch_size, "forward_flops_per_example": ledger.flops,
        "predicted_step_cost_vs_uniform": ledger.overhead(), "seed": seed,
    }  # fmt: skip
    curve_logger = callbacks_lib.CurveLogger(
        task, ledger, eval_every, os.path.join(model_dir, "metrics.json"),
        summary_dir=os.path.join(model_dir, "tb", "eval"), extra=facts,
    )  # fmt: skip
    train_ds = task.dataset("train", super_batch_size, shuffle=True, repeat=True, seed=seed)
    write_operative_config(model_dir)
    model.fit(
        train_ds, epochs=num_steps // eval_every, steps_per_epoch=eval_every, verbose=verbose,
        callbacks=[
            callbacks_lib.StopOnNaN(), curve_logger,
            keras.callbacks.TensorBoard(os.path.join(model_dir, "tb"), write_graph=False),
        ],
    )  # fmt: skip
    learner.save(os.path.join(model_dir, "learner.keras"))
    write_operative_config(model_dir)
    return curve_logger.curve


def summarize(curve, metric="test_accuracy"):
    """Best value of `metric` on a curve and where it was reached."""
    best = max(curve, key=lambda p: p[metric])
    return {"best": best[metric], "best_step": best["step"], "final": curve[-1][metric]}

