"""Training: the step, the loop around it, and what runs beside it.

- `active_learner`: `ActiveLearner`, the train step (score, select, update);
  `replicas`: its `tf.distribute` plumbing (replica context, all-gathers,
  global selection, multi-worker build).
- `loop`: the one training loop (data stream, segments, callbacks, resume);
  `checkpointing`: its checkpoints; `callbacks`: the curve and the NaN stop.
- `replay`: record a run's selections and train on them again.
- `distribute`, `peers`: strategies, global batches, multi-worker peers.
"""
