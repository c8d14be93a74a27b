"""Presets that reproduce other frameworks' initializers exactly.

* ``initlab.compat.torch``: every function of ``torch.nn.init`` by the same name and signature, bit-identical
  for float32 tensors and the same generator state;
* ``initlab.compat.keras``: Keras 3's initializers (layout ``(*k, in, out)``, truncated normals, its defaults),
  and ``KerasInitializer`` / ``ForActivation``, ``keras.initializers.Initializer`` adapters (docs/keras.md);
* ``initlab.compat.jax``: ``jax.nn.initializers``' schemes (same layout as Keras, JAX's defaults), each also
  callable as a JAX initializer ``init(key, shape, dtype)``; ``initializer(spec)``, ``for_activation``
  (docs/jax.md);
* ``initlab.compat.lasagne``: Lasagne's initializers (``(in, out)`` dense weights, ``c01b``, default gain 1,
  ``Sparse`` as the fraction of non-zero incoming weights).
"""

from initlab.compat import jax, keras, lasagne, torch

__all__ = ["torch", "keras", "jax", "lasagne"]
