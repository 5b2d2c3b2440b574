"""threefold.core: the shared AI core (classifiers, embedder, vector index, model registry).

transformers 5 loads every model with `use_kernels=True` when the `kernels` package is installed
(transformers itself requires it), and on a GPU `model.train()` / `model.eval()` then fetch
compute kernels from the Hugging Face Hub: code downloaded at run time, which fails offline
(fine-tuning on a GPU crashed at its first evaluation). threefold never downloads at run time,
so hub kernels are off unless `USE_HUB_KERNELS` is set explicitly.
"""

import os

os.environ.setdefault("USE_HUB_KERNELS", "NO")
