"""Integrations at the edge of initlab: they depend on the core, the core never imports them at import time.

* ``integrations.tensorboard``: per-layer scalars and histograms of a probe or a :class:`initlab.Monitor`
  recording, written as TensorBoard event files (needs the ``tensorboard`` package:
  ``pip install initlab[tensorboard]``);
* ``integrations.transformers``: :class:`~initlab.integrations.transformers.ProbeCallback`, a Hugging Face
  ``Trainer`` callback that probes the model at step 0 and every N steps (needs ``transformers`` and
  ``accelerate``).

Neither is imported by ``import initlab``: ``Monitor(..., tensorboard=logdir)`` and ``initlab probe
--tensorboard`` import the writer only when asked to write.
"""
