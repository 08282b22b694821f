"""Neural-network building blocks shared by the models, guides and flows."""
from .mlp import MLP, get_activation  # noqa: F401
