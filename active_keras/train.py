"""The canonical training entry point: reference, then the learner, for any task.

Everything is configured with gin (see `gin/classact.gin`); `active_keras.main`
is the command line around `run()`.

- `run` (`run.*`): the run's own concerns (task, mode, sizes, steps and
  evaluation cadence, seed, strategy, paths, outputs).
- `build_active_learner` (`ActiveLearner.*`): the selection knobs; resolves the
  policy once and builds the models it needs (`Policy.models`).
- `ActiveRun`, `ReferenceTraining` (`train_reference.*`): variants of the one
  training loop (`training/loop.py`), as is `training.replay.ReplayRun`.

Example:

```python
import gin
from active_keras import train

gin.parse_config_files_and_bindings(["gin/classact.gin"], ["run.num_steps = 100"])
curve = train.run("runs/classact")
```
"""

import contextlib
import functools
import inspect
import json
import os
import shutil
import sys
import tempfile

import gin
import keras
import tensorflow as tf

from active_keras import files
from active_keras.analysis import flops, report, selection_log
from active_keras.data.classification import CROSSFIT_FOLDS
from active_keras.selection import policies
from active_keras.selection import reference_losses as reference_losses_lib
from active_keras.training import callbacks as callbacks_lib
from active_keras.training import checkpointing, distribute, loop, replay, replicas
from active_keras.training.active_learner import ActiveLearner


@gin.configurable
def make_optimizer(
    name="adam",
    learning_rate=1e-3,
    schedule="constant",
    num_steps=None,
    warmup_steps=0,
    weight_decay=None,
):
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
            0.0 if warmup_steps else learning_rate,
            decay_steps=num_steps - warmup_steps,
            warmup_target=learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
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


def reference_checkpoints(path):
    """The checkpoint folder of the reference trained into `path`: beside it, `<name>.checkpoints`.

    Beside the file, not in a run's model_dir: the reference belongs to its
    path (runs share it), and its `.keras` file is never copied into a
    learner's checkpoints. A killed pre-training resumes from there.
    """
    return f"{os.path.splitext(path)[0]}.checkpoints"


class ReferenceTraining(loop.Loop):
    """The reference's pre-training: plain `fit` on `split`, saved atomically to `path`."""

    def __init__(
        self,
        task,
        path,
        num_steps,
        batch_size,
        learning_rate,
        split,
        seed,
        jit_compile,
        checkpoint_every,
    ):
        keras.utils.set_random_seed(seed)
        model = task.build_small(name="reference")
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=task.loss(),
            metrics=task.metrics(),
            jit_compile=jit_compile,
        )
        facts = {"role": "reference", "split": split, "batch_size": batch_size, "seed": seed}
        # One Keras epoch: no evaluation on the way.
        schedule = loop.Schedule(num_steps, num_steps, checkpoint_every, verbose=0)
        facts.update(_optimizer_facts(model.optimizer))
        super().__init__(model, reference_checkpoints(path), schedule, facts)
        self.task, self.path, self.split = task, path, split
        self.batch_size, self.seed = batch_size, seed

    def dataset(self, start_step):
        ds = self.task.dataset(
            self.split,
            self.batch_size,
            shuffle=True,
            repeat=True,
            seed=self.seed,
            start_batch=start_step,
        )
        return ds.map(lambda x, y, meta: (x, y))

    def save(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        # Atomic: a killed run never leaves a half-written file.
        files.save_model(self.model, self.path, site="reference")
        metric = self.task.primary_metric
        loss = f", train loss {self.logs['loss']:.4f}" if "loss" in self.logs else ""
        print(
            f"reference: {metric} {self.task.evaluate(self.model)[metric]:.4f}{loss}, "
            f"saved to {self.path}",
            flush=True,
        )


CROSSFIT = "crossfit"


def crossfit_paths(path):
    """The files of the two cross-fitted references of `path`: `<name>.fold0.keras`, `.fold1`."""
    stem = os.path.splitext(path)[0]
    return [f"{stem}.fold{k}.keras" for k in range(len(CROSSFIT_FOLDS))]


def _check_crossfit(task):
    if not task.supports_crossfit:
        raise ValueError(
            f"train_reference.split = {CROSSFIT!r} needs a task whose data has cross-fit folds; "
            f"{type(task).__name__} has none. Train its reference on held-out data "
            "(train_reference.split = 'heldout')."
        )


@gin.configurable
def train_reference(
    task,
    path,
    num_steps=2000,
    batch_size=128,
    learning_rate=1e-3,
    split="heldout",
    seed=0,
    jit_compile=True,
    checkpoint_every=250,
    discard_mismatched=False,
):
    """Trains the small reference model on `split` (clean held-out data) and saves it.

    Checkpoints every `checkpoint_every` steps (and at the end) go to
    `reference_checkpoints(path)`; training it again after a kill resumes from
    the latest.

    With `split="crossfit"` no held-out data is needed: two references are
    trained, each on one half of the train split ("train_fold0",
    "train_fold1"), into `crossfit_paths(path)`, each for `num_steps`. A run
    then scores every training example with the reference that did not see
    it, through the precomputed loss table (`run.reference_losses`, which
    cross-fitting turns on), and counts both pre-trainings.

    Args:
        discard_mismatched: Start over, deleting the checkpoints, when those
            beside `path` are of another reference (another task or size)
            instead of raising; `gin/local.gin` sets it, as its throw-away
            reference path is shared by every task's smoke runs.

    Returns:
        The trained model; its file is `path` (with "crossfit": the list of
        both, in fold order).
    """
    if split == CROSSFIT:
        _check_crossfit(task)
        return [
            train_reference(
                task,
                fold_path,
                num_steps,
                batch_size,
                learning_rate,
                fold,
                seed,
                jit_compile,
                checkpoint_every,
                discard_mismatched,
            )
            for fold_path, fold in zip(crossfit_paths(path), CROSSFIT_FOLDS, strict=True)
        ]
    print(f"reference: training the small model for {num_steps} steps on {split!r}", flush=True)

    def fresh():  # A new model and checkpointer.
        return ReferenceTraining(
            task,
            path,
            num_steps,
            batch_size,
            learning_rate,
            split,
            seed,
            jit_compile,
            checkpoint_every,
        )

    training = fresh()
    try:
        training.run()
    except checkpointing.CheckpointMismatch as e:
        if not discard_mismatched:
            raise
        print(f"reference: {e} Starting over.", flush=True)
        _remove_checkpoints(path)
        training = fresh()
        training.run()
    return training.model


def _throw_away(path):
    """Whether `path` lies in the user's cache, where `--local` keeps its shared reference."""
    root = os.path.realpath(files.cache_root())
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def _remove_checkpoints(path):
    """Removes the reference checkpoints of `path`; a failure is an error (not hidden)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(reference_checkpoints(path))


def crossfitted():
    """Whether the run's references are cross-fitted (`train_reference.split = 'crossfit'`)."""
    return _configured("split") == CROSSFIT


def load_references(task, path):
    """The run's frozen references: `[reference]`, or the two cross-fitted ones in fold order."""
    if not crossfitted():
        return [load_or_train_reference(task, path)]
    _check_crossfit(task)
    if not path:
        raise ValueError("The policy needs a reference: bind run.reference_path.")
    return [
        load_or_train_reference(task, fold_path, split=fold)
        for fold_path, fold in zip(crossfit_paths(path), CROSSFIT_FOLDS, strict=True)
    ]


@gin.configurable(denylist=["task", "path", "split"])
def load_or_train_reference(task, path, retrain_mismatched=False, split=None):
    """Loads the reference from `path`, training and saving it first if missing.

    Args:
        task: The task.
        path: `.keras` file of the reference.
        retrain_mismatched: Retrain (and overwrite) a saved reference that does
            not fit the task instead of raising, when it lies in the user's
            cache (`files.cache_root()`); `gin/local.gin` sets it, as its
            throw-away reference file there is shared by every task's smoke
            runs. A reference elsewhere is the user's own: it is never
            overwritten, and a mismatch raises.
        split: The split to train it on if missing (default:
            `train_reference.split`); a cross-fit fold for one of two
            cross-fitted references (`load_references`).
    """
    train = functools.partial(train_reference, split=split) if split else train_reference
    if path and os.path.exists(path):
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as e:  # noqa: BLE001 - a damaged file raises many types.
            raise ValueError(
                f"The reference file {path!r} cannot be loaded ({type(e).__name__}: {e}); it "
                "may be truncated or corrupt. Delete it to train the reference again, or point "
                "run.reference_path at a good file."
            ) from e
        print(f"reference: loaded {path}", flush=True)
        if retrain_mismatched and _throw_away(path):
            try:
                task.check_model(model, f"reference ({path})")
            except ValueError as e:
                print(f"reference: {e} Retraining it.", flush=True)
                _remove_checkpoints(path)  # Of the mismatched model.
                model = train(task, path)
    else:
        if not path:
            raise ValueError("The policy needs a reference: bind run.reference_path.")
        model = train(task, path)
    task.check_model(model, f"reference ({path})")
    return model


def _writable_dir(model_dir):
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise FileExistsError(
            f"model_dir {model_dir!r} is a file, not a folder; pass a folder as --model_dir."
        )
    try:
        os.makedirs(model_dir, exist_ok=True)
        # A probe of its own: the workers of a multi-worker run share model_dir and start
        # together; with one probe name, one worker removed the other's probe, which then
        # failed as "not writable (No such file or directory)".
        with tempfile.NamedTemporaryFile(dir=model_dir, prefix=".write_test"):
            pass
    except OSError as e:
        raise PermissionError(
            f"model_dir {model_dir!r} is not writable ({e.strerror}); pass a writable --model_dir."
        ) from e


def write_operative_config(model_dir):
    # A temporary file of its own per process: workers may share model_dir.
    with files.atomic_file(os.path.join(model_dir, "operative_config.gin")) as f:
        f.write(gin.operative_config_str())


# The selection knobs of a run: `ActiveLearner.*` bindings (they were `run.*` ones).
SELECTION_KNOBS = (
    "policy",
    "selection",
    "keep_fraction",
    "temperature",
    "final_temperature",
    "online_reference",
    "selection_scope",
)


# The class's defaults, which the gin factory takes as its own.
_CLASS_DEFAULTS = {
    name: p.default for name, p in inspect.signature(ActiveLearner.__init__).parameters.items()
}


@gin.configurable("ActiveLearner", allowlist=[*SELECTION_KNOBS, "jit_scoring"])
def build_active_learner(
    task,
    reference_path,
    *,
    super_batch_size,
    seed,
    num_steps=None,
    policy=_CLASS_DEFAULTS["policy"],
    selection=_CLASS_DEFAULTS["selection"],
    keep_fraction=_CLASS_DEFAULTS["keep_fraction"],
    temperature=_CLASS_DEFAULTS["temperature"],
    final_temperature=None,
    online_reference=_CLASS_DEFAULTS["online_reference"],
    selection_scope=_CLASS_DEFAULTS["selection_scope"],
    jit_scoring=_CLASS_DEFAULTS["jit_scoring"],
):
    """The run's `ActiveLearner` with the models its policy needs; gin binds it as `ActiveLearner`.

    The selection knobs are `ActiveLearner.*` bindings (`gin/classact.gin`);
    `active_learner.py` itself knows nothing of gin. The policy is resolved
    here, once, and decides which models exist (`Policy.models`): a reference
    (trained online, or loaded from `reference_path`, trained there first if
    missing) and an actor. Its defaults are the class's (one set of
    defaults); the CLI's choices, sampling and global selection across
    replicas as in the paper's runs, are bindings of the shipped gin files.

    Args:
        task: The run's task (builds the models).
        reference_path: The frozen reference's `.keras` file (`run.reference_path`).
        super_batch_size: `B` (`run.super_batch_size`: the data stream's too).
        seed: Seed of the weights and the sampling (`run.seed`).
        num_steps: The run's learner updates (`run.num_steps`): where a
            `final_temperature` is reached.
        policy: Scoring policy name (see `active_keras.selection.policies`).
        selection: "topk", "sample" or "joint".
        keep_fraction: b / B.
        temperature: Sampling temperature (at the first update).
        final_temperature: None for a constant temperature; else the
            temperature moves geometrically from `temperature` to this one at
            the run's last update (larger: a draw that softens towards uniform
            as the learner overtakes the scoring models).
        online_reference: Train the reference online (ClassAct-Online).
        selection_scope: "global" or "local" selection across replicas.
        jit_scoring: As for `ActiveLearner`.

    Returns:
        The `ActiveLearner`, not compiled.
    """
    policy = policies.get(policy)
    needed = policy.models(online_reference)
    if needed.online_reference:
        reference = task.build_small(name="reference")
    elif needed.reference:
        # Cross-fitted: the first fold's model stands for both (their losses are looked up).
        reference = load_references(task, reference_path)[0]
    else:
        reference = None
    keras.utils.set_random_seed(seed)
    learner = task.build_learner()
    actor = task.build_small(name="actor") if needed.actor else None
    if final_temperature is not None:
        if not num_steps or not temperature > 0 or not final_temperature > 0:
            raise ValueError(
                "ActiveLearner.final_temperature needs run.num_steps and temperatures > 0, got "
                f"num_steps={num_steps}, temperature={temperature}, "
                f"final_temperature={final_temperature}."
            )
        # T * (T_final / T) ** (step / N): ExponentialDecay with a growth rate is that schedule.
        temperature = keras.optimizers.schedules.ExponentialDecay(
            temperature, num_steps, final_temperature / temperature
        )
    return ActiveLearner(
        learner,
        reference=reference,
        actor=actor,
        policy=policy,
        selection=selection,
        keep_fraction=keep_fraction,
        temperature=temperature,
        super_batch_size=super_batch_size,
        online_reference=online_reference,
        example_loss=task.example_loss,
        selection_scope=selection_scope,
        seed=seed,
        jit_scoring=jit_scoring,
    )


@gin.configurable(denylist=["model_dir"])
def run(
    model_dir,
    task=gin.REQUIRED,
    mode="train",
    super_batch_size=128,
    num_steps=3000,
    eval_every=250,
    reference_path=None,
    optimizer_fn=make_optimizer,
    jit_compile=True,
    seed=0,
    verbose=2,
    checkpoint_every=None,
    deterministic=False,
    selection_log_every=None,
    write_report=True,
    strategy="one_device",
    record_selections=True,
    replay_from=None,
    reference_losses=None,
):
    """Trains the reference (mode "reference") or a learner (mode "train").

    The learner run writes into `model_dir`: `metrics.json` (the evaluated
    curve with the FLOP ledger), `operative_config.gin`, TensorBoard logs in
    `tb/`, and the trained learner as `learner.keras`. Its `ActiveLearner`
    (policy, selection, keep fraction, ...) is configured as `ActiveLearner.*`
    (`build_active_learner`); `run` holds the run's own concerns.

    Args:
        model_dir: Output directory.
        task: The task (for example `@ClassificationTask()`).
        mode: "train" or "reference".
        super_batch_size: B.
        num_steps: Learner updates.
        eval_every: Steps between evaluations (a multiple-of-steps epoch).
        reference_path: `.keras` file of the reference; trained if missing.
        optimizer_fn: Makes the learner's optimizer (the actor's is a copy).
        jit_compile: XLA-compile the train step (one device).
        seed: Seed of weights, data order and sampling.
        verbose: Progress printed: 2 (default) one line per evaluation (step,
            accuracy, FLOPs so far, ETA; `callbacks.progress_line`), 1 that
            line and Keras's progress bar within each evaluation interval
            (which Keras calls an epoch), 0 nothing.
        checkpoint_every: Steps between checkpoints in `model_dir/checkpoints`
            (default `eval_every`); one is also taken at the end. Rerunning the
            same command resumes from the latest (`active_keras.training.loop`).
        deterministic: `tf.config.experimental.enable_op_determinism()`: the
            same seed then gives the same run on GPUs too (slower; CPU runs
            are repeatable without it).
        selection_log_every: Steps between records of `model_dir/selection_log`
            (`active_keras.analysis.selection_log`; default `eval_every`, 0 for none).
        write_report: Render `model_dir/report/index.html` at the end
            (`active_keras.analysis.report`).
        strategy: "one_device" (no tf.distribute scope, so the whole step can be
            XLA-compiled), "mirrored", "multi_worker_mirrored" or "tpu"
            (`distribute.make_strategy`; bind `make_strategy.tpu_address`).
        record_selections: Record the example ids selected at every step in
            `model_dir/replay` (`active_keras.training.replay`; one device only).
        replay_from: A recorded run's model_dir: train the learner with plain
            `fit` on that run's selected sub-batches, in order (no scoring;
            `replay.ReplayRun`). The data set-up must match the recorded run's.
        reference_losses: `'auto'` to score the training set once with the
            frozen reference and look its losses up by example id in every
            step (cached beside `reference_path`; `active_keras.selection.reference_losses`),
            or the path of such a cache; `None` computes them every step.
            Selection is unchanged; the reference's per-step pass is saved.

    Returns:
        The curve: a list of dicts, one per evaluation.
    """
    _writable_dir(model_dir)
    if reference_path and not str(reference_path).endswith(".keras"):
        # Checked before anything trains: the reference would otherwise train, then fail to save.
        raise ValueError(
            f"run.reference_path = {reference_path!r} must end in '.keras' (the file Keras saves)."
        )
    task.use_model_dir(model_dir)  # E.g. ClipTask keeps its vocabulary there.
    if mode == "reference":
        train_reference(task, reference_path)
        write_operative_config(model_dir)
        return []
    if mode != "train":
        raise ValueError(f"Unknown mode {mode!r}; use train or reference.")
    schedule = loop.Schedule(num_steps, eval_every, checkpoint_every, verbose)
    if replay_from:
        write_operative_config(model_dir)
        return replay.ReplayRun(
            model_dir, task, replay_from, optimizer_fn, schedule, jit_compile=jit_compile, seed=seed
        ).run()
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    dist = None if strategy == "one_device" else distribute.make_strategy(strategy)
    with dist.scope() if dist else contextlib.nullcontext():
        model = build_active_learner(
            task, reference_path, super_batch_size=super_batch_size, seed=seed, num_steps=num_steps
        )
        model.compile(
            optimizer=optimizer_fn(num_steps=num_steps),
            loss=task.loss(),
            metrics=task.metrics(),
            jit_compile=jit_compile,
        )
        if crossfitted() and model.model_set.frozen_reference:
            # Each example's loss is its other fold's reference's: only a table can say so.
            reference_losses = reference_losses or "auto"
        if reference_losses:
            _use_reference_losses(model, task, reference_losses, reference_path)
        return ActiveRun(
            model,
            model_dir,
            task,
            dist,
            schedule,
            seed=seed,
            selection_log_every=selection_log_every,
            record_selections=record_selections,
            write_report=write_report,
        ).run()


def _use_reference_losses(model, task, setting, reference_path):
    """Scores with the frozen reference's precomputed losses (`run.reference_losses`)."""
    if not model.model_set.frozen_reference:
        raise ValueError(
            f"run.reference_losses = {setting!r} needs a policy that reads a frozen reference "
            f"(ActiveLearner.policy = {model.policy.name!r}, ActiveLearner.online_reference = "
            f"{model.online_reference})."
        )
    folds = load_references(task, reference_path) if crossfitted() else None
    model.use_reference_losses(
        reference_losses_lib.load_or_compute(setting, model, task, reference_path, folds=folds)
    )


def _reference_pretraining_flops(ledger, model_set):
    """3 forward passes per example of `train_reference`'s configured steps and batch size,
    for each reference trained (two when cross-fitted)."""
    if not model_set.frozen_reference:
        return 0
    per_reference = 3 * ledger.flops["reference"] * _configured("num_steps")
    references = len(CROSSFIT_FOLDS) if crossfitted() else 1
    return references * per_reference * _configured("batch_size")


def _configured(name):
    """`train_reference`'s argument `name` as gin binds it, else its default."""
    try:
        return gin.query_parameter(f"train_reference.{name}")
    except ValueError:  # Not bound.
        return inspect.signature(train_reference).parameters[name].default


def _optimizer_facts(optimizer):
    """The optimizer's class and learning rate (a number or a schedule's config), as JSON."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # Under loss scaling.
    learning_rate = inner.get_config()["learning_rate"]
    if not isinstance(learning_rate, (int, float)):
        learning_rate = keras.saving.serialize_keras_object(learning_rate)
    return {
        "optimizer": type(inner).__name__,
        "learning_rate": json.loads(json.dumps(learning_rate, default=str)),
    }


def _check_global_selection(model, dist):
    """Raises ValueError, before any training, when global selection cannot share its winners.

    Replica r trains on winners r, r + R, ...: b must be a multiple of the replica count R.
    """
    count = dist.num_replicas_in_sync if dist is not None else 1
    b = model.sub_batch_size(model.super_batch_size)
    if count > 1 and model.selection_scope == "global" and b % count:
        raise ValueError(
            f"Global selection keeps b = {b} of B = {model.super_batch_size}, which the "
            f"{count} replicas cannot share equally: choose run.super_batch_size and "
            "ActiveLearner.keep_fraction so that b is a multiple of the replica count, or set "
            "ActiveLearner.selection_scope = 'local'."
        )


class ActiveRun(loop.Loop):
    """The learner run: a compiled `ActiveLearner` on the task's training super-batches.

    Adds to the loop the evaluated curve (`metrics.json`, with the FLOP ledger
    and the run's facts), TensorBoard logs, the selection log and the replay
    record, and saves the learner and the report at the end. Under
    multi-worker training every worker runs it; only the chief writes shared
    files.
    """

    def __init__(
        self,
        model,
        model_dir,
        task,
        dist,
        schedule,
        *,
        seed,
        selection_log_every,
        record_selections,
        write_report,
    ):
        super_batch_size = model.super_batch_size
        ledger = flops.FlopLedger.for_learner(model, super_batch_size)
        precomputed = model.reference_loss_table is not None
        facts = {
            "policy": model.policy.name,
            "selection": model.selection,
            "keep_fraction": model.keep_fraction,
            "temperature": (
                keras.optimizers.schedules.serialize(model.temperature_schedule)
                if model.temperature_schedule
                else model.temperature
            ),
            "super_batch_size": super_batch_size,
            "sub_batch_size": ledger.sub_batch_size,
            "forward_flops_per_example": ledger.flops,
            "predicted_step_cost_vs_uniform": ledger.overhead(),
            "one_time_flops": ledger.one_time,
            # Beside the ledger, not in it: what training this reference costs, as configured now.
            "reference_pretraining_flops": _reference_pretraining_flops(ledger, model.model_set),
            # Resuming under another optimizer or learning-rate schedule would silently change
            # the run: the checkpointer refuses it, naming the value (a cosine schedule includes
            # its budget; a constant learning rate lets a larger num_steps extend a finished run).
            **_optimizer_facts(model.optimizer),
            "reference_losses": "precomputed" if precomputed else "computed each step",
            "seed": seed,
        }
        _check_global_selection(model, dist)
        super().__init__(model, os.path.join(model_dir, "checkpoints"), schedule, facts)
        self.model_dir, self.task, self.dist, self.ledger = model_dir, task, dist, ledger
        self.super_batch_size, self.seed = super_batch_size, seed
        self.selection_log_every = selection_log_every
        self.record_selections = record_selections
        self.write_report = write_report

    def dataset(self, start_step):
        return loop.train_dataset(self.task, self.super_batch_size, self.seed, start_step)

    def fit_data(self, start_step):
        if self.dist is None:
            return self.dataset(start_step)
        return distribute.shard_global_batches(
            self.dist, lambda: self.dataset(start_step), self.super_batch_size
        )

    def state(self):
        return self.model.checkpointable_state()

    def curve_logger(self, curve):
        logger = callbacks_lib.CurveLogger(
            self.task,
            self.ledger,
            self.eval_every,
            os.path.join(self.model_dir, "metrics.json"),
            summary_dir=os.path.join(self.model_dir, "tb", "eval") if self.is_chief else None,
            curve=curve,
            extra=self.facts,
            total_steps=self.num_steps,
            print_progress=self.verbose > 0,
            writes=self.is_chief,
        )
        return logger

    @property
    def is_chief(self):
        """Whether this process writes the run's shared files (one device: always)."""
        return self.dist is None or self.dist.extended.should_checkpoint

    def started(self, start_step):
        if self.is_chief:
            write_operative_config(self.model_dir)

    def more_callbacks(self):
        callbacks = []
        if self.is_chief:
            tb = os.path.join(self.model_dir, "tb")
            callbacks.append(keras.callbacks.TensorBoard(tb, write_graph=False))
        if self.selection_log_every != 0:
            log_dir = os.path.join(self.model_dir, "selection_log")
            every = self.selection_log_every or self.eval_every
            callbacks.append(
                selection_log.SelectionLogger(self.task, log_dir, every, total_steps=self.num_steps)
            )
        if self.record_selections and self.dist is None:
            folder = os.path.join(self.model_dir, replay.FOLDER)
            callbacks.append(replay.ReplayRecorder(folder))
        return callbacks

    def save(self):
        self._save_outputs()
        replicas.barrier(self.dist)  # No worker leaves while the chief still writes.

    def _save_outputs(self):
        learner = self.model.learner
        if not self.is_chief:
            task_id = self.dist.cluster_resolver.task_id
            files.save_model(
                learner, os.path.join(self.model_dir, f"learner.worker{task_id}.keras")
            )
            return
        files.save_model(learner, os.path.join(self.model_dir, "learner.keras"))
        write_operative_config(self.model_dir)
        if self.write_report:
            try:
                print(f"report: {report.write_report(self.model_dir)}", flush=True)
            except Exception as e:  # noqa: BLE001 - the trained run is saved; a figure must not fail it.
                print(
                    f"warning: the report could not be written: {e!r}", file=sys.stderr, flush=True
                )
