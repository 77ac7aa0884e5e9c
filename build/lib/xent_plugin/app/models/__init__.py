"""Networks and the LightningModule that ``conf/model`` selects."""

from xent_plugin.app.models.classifier import XentClassifier
from xent_plugin.app.models.logistic_regression import LogisticRegression
from xent_plugin.app.models.mlp import MLP
from xent_plugin.app.models.small_cnn import SmallCNN
from xent_plugin.app.models.tiny_gru import TinyGRU
from xent_plugin.app.models.tiny_transformer import TinyTransformer

__all__ = ["MLP", "LogisticRegression", "SmallCNN", "TinyGRU", "TinyTransformer", "XentClassifier"]
