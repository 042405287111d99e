import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import tensorflow as tf

from active_keras import ActiveLearner
from active_keras.analysis import flops
from active_keras.models import clip


def _dense(n_in, n_out, name="m"):
    return keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(n_out)], name=name)


class FlopsTest(tf.test.TestCase):
    def test_forward_flops_counts_matmul_and_bias(self):
        self.assertEqual(flops.forward_flops(_dense(5, 3)), 2 * 5 * 3 + 3)

    def test_forward_flops_of_a_convolution(self):
        model = keras.Sequential(
            [keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3, padding="same", use_bias=False)]
        )
        self.assertEqual(flops.forward_flops(model), 4 * 4 * 2 * 9 * 2)

    def test_attention_products_of_the_tiny_clip_towers_are_counted(self):
        # Tiny towers: width 32, 2 heads of 16, one block each. Image: 32 px in 8 px
        # patches = 16 tokens; text: 16 tokens. Per block, QK^T is 2 heads x 16 x 16
        # scores of 16-term dot products, and attention times V 2 x 16 x 16 terms of
        # 16 values: 2 * (2 * 16 * 16 * 16) FLOPs each.
        model = clip.build_clip(100, "tiny", image_size=32, sequence_length=16)
        per_product = 2 * (2 * 16 * 16 * 16)
        hand_count = 2 * per_product + 2 * per_product  # Image block + text block.
        spec = {
            "image": tf.TensorSpec((1, 32, 32, 3), tf.float32),
            "tokens": tf.TensorSpec((1, 16), tf.int32),
        }
        graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
        self.assertEqual(flops.einsum_flops(graph), hand_count)
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        profiled = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
        self.assertEqual(flops.forward_flops(model), profiled + hand_count)

    def test_einsum_flops_of_a_matrix_product(self):
        @tf.function
        def f(a, b):
            return tf.einsum("ij,jk->ik", a, b)

        graph = f.get_concrete_function(
            tf.TensorSpec((3, 4), tf.float32), tf.TensorSpec((4, 5), tf.float32)
        ).graph
        self.assertEqual(flops.einsum_flops(graph), 2 * 3 * 4 * 5)

    def test_ledger_follows_the_method_formula(self):
        learner, reference = _dense(10, 100, "learner"), _dense(10, 4, "reference")
        f_l, f_a = flops.forward_flops(learner), flops.forward_flops(reference)
        model = ActiveLearner(learner, reference, policy="learnability")
        ledger = flops.FlopLedger.for_learner(model, super_batch_size=32)
        b, big_b = 16, 32
        self.assertEqual(
            ledger.per_step(),
            {"learner": 3 * f_l * b, "actor": f_a * big_b + 3 * f_a * b, "reference": f_a * big_b},
        )
        self.assertAllClose(
            ledger.overhead(),
            (3 * f_l * b + 2 * f_a * big_b + 3 * f_a * b) / (3 * f_l * b),
            rtol=1e-6,
            atol=1e-12,
        )
        totals = ledger.totals(10)
        self.assertEqual(totals["total_flops"], 10 * sum(ledger.per_step().values()))

    def test_uniform_costs_only_the_learner_update(self):
        model = ActiveLearner(_dense(10, 100, "learner"), policy="uniform")
        ledger = flops.FlopLedger.for_learner(model, super_batch_size=32)
        self.assertEqual(
            ledger.per_step(), {"learner": 3 * flops.forward_flops(model.learner) * 16}
        )
        self.assertEqual(ledger.overhead(), 1.0)

    def test_rho_loss_scores_with_a_learner_pass_over_the_super_batch(self):
        learner, reference = _dense(10, 100, "learner"), _dense(10, 4, "reference")
        model = ActiveLearner(learner, reference, policy="rho_loss")
        cost = flops.FlopLedger.for_learner(model, super_batch_size=32).per_step()
        f_l = flops.forward_flops(learner)
        self.assertEqual(cost["learner"], f_l * 32 + 3 * f_l * 16)

    def test_forward_flops_of_a_dict_input_clip_model(self):
        from active_keras.models import clip

        small = clip.build_clip(50, "tiny", image_size=16, sequence_length=6, image_encoder="cnn")
        big = clip.build_clip(50, "tiny", 16, 6, image_encoder="cnn", name="learner", width=64)
        f_small, f_big = flops.forward_flops(small), flops.forward_flops(big)
        self.assertTrue(0 < f_small < f_big)
        ledger = flops.FlopLedger.for_learner(
            ActiveLearner(big, small, policy="learnability"), super_batch_size=8
        )
        self.assertEqual(ledger.flops, {"learner": f_big, "actor": f_small, "reference": f_small})

    def test_forward_flops_of_a_two_input_list_model(self):
        a, b = keras.Input((3,)), keras.Input((2,))
        model = keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
        self.assertEqual(flops.forward_flops(model), 2 * 5 * 1 + 1)


if __name__ == "__main__":
    tf.test.main()
