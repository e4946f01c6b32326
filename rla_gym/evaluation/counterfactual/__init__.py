"""Counterfactual action-faithfulness: do different actions change the dream as they change reality?

Fidelity on recorded episodes cannot tell a model that listens to the action from one that
predicts a generic "motion from this state". This benchmark asks the counterfactual question
directly, per suite:

1. **Real starts.** Fresh held-out real episodes (the suite's scripted expert and its noisy
   variant, a collection seed none of the bundles was trained on) run without rendering; the exact
   simulator state (:meth:`~rla_gym.sims.base.SimAdapter.get_sim_state`) and the recorded actions
   are kept at chunk boundaries inside the dreamed env's horizon, and ``states`` of them are
   drawn.
2. **Real outcomes.** Each start is restored exactly and ``M`` different action sequences of
   ``max(horizons)`` chunks are executed from it: the recorded actions, the recorded actions plus
   Gaussian noise of each scale in ``noise_scales`` (normalised units, clipped to ``[-1, 1]``),
   and uniform random actions. Frames are rendered only at the start and at the chunk boundaries
   of ``horizons`` and encoded with the bundle's encoder.
3. **Dreamed outcomes.** The world model rolls out from the *encoded real start* with the same
   normalised actions, chunk by chunk as the env does (a world model with history also gets the
   encoded real frame one chunk before the start, restored and rendered like the start). The
   ``M`` outcomes of one start share the flow noise (common random numbers), so their
   differences come from the actions alone.

Metrics per horizon (features flattened over tokens and channels; ``real_i`` / ``dream_i`` are
the outcomes of sequence ``i`` from one start; pairs ``i < j`` of one start):

* ``direction``: mean cosine between ``real_i - real_j`` and ``dream_i - dream_j``;
* ``magnitude_ratio``: mean ``|dream_i - dream_j| / |real_i - real_j|``;
* ``ranking_spearman``: per start, Spearman between the real and the dreamed mean-L1 distances of
  the ``M`` outcomes to the aligned frame of the reference demo (the demo nearest to the
  episode's first frame, row ``t / K + h`` clipped to its length), averaged over starts;
* ``l1``: mean ``|dream_i - real_i|`` over all outcomes; ``copy_last_l1``: mean
  ``|start - real_i|`` (predicting "nothing changes").

For RLA-WM the **RLA ceiling** is reported beside: the world model's own RLA decoding the *true*
latent of each real one-chunk outcome, ``decode(s, encode(s, real_i))``, i.e. what a perfect
latent predictor would reach.

Modules: ``config`` (:class:`CounterfactualConfig`), ``reality`` (steps 1-2: real starts
restored and branched), ``scoring`` (step 3: dreamed outcomes, scored), ``metrics`` (the
metrics above), ``suite`` (:func:`evaluate_suite`, one suite end to end).
"""

from rla_gym.evaluation.counterfactual.config import CounterfactualConfig
from rla_gym.evaluation.counterfactual.metrics import outcome_metrics, pair_agreement
from rla_gym.evaluation.counterfactual.reality import (
    RealOutcomes,
    RealStart,
    measure_real,
    real_outcomes,
    record_starts,
)
from rla_gym.evaluation.counterfactual.scoring import (
    dream_outcomes,
    rla_ceiling_outcomes,
    score_models,
    score_rla_ceiling,
)
from rla_gym.evaluation.counterfactual.suite import evaluate_suite

__all__ = [
    "CounterfactualConfig",
    "RealOutcomes",
    "RealStart",
    "dream_outcomes",
    "evaluate_suite",
    "measure_real",
    "outcome_metrics",
    "pair_agreement",
    "real_outcomes",
    "record_starts",
    "rla_ceiling_outcomes",
    "score_models",
    "score_rla_ceiling",
]
