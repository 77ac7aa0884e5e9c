"""Suite-wide settings: one intra-op thread (the tests' tensors are tiny; thread start-up and contention on
2-core CI machines cost more than they save) and an off-screen matplotlib backend."""

import matplotlib
import torch

matplotlib.use("Agg")
torch.set_num_threads(1)
