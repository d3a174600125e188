"""lnlib: why neural networks are overconfident, and how Logit Normalization fixes part of it.

A small library behind the lnlib book: LogitNorm (Wei et al., ICML 2022) and ReLU far-away
overconfidence (Hein et al., CVPR 2019). See README.md and the book for the tour.
"""

from lnlib.config import PRESETS, TrainConfig, preset
from lnlib.runs import Run
from lnlib.train import load_or_train, load_or_train_all

__all__ = ["PRESETS", "Run", "TrainConfig", "load_or_train", "load_or_train_all", "preset"]
__version__ = "0.1.0"
