"""Neural-network building blocks shared by the models, guides and flows."""
from .mlp import MLP, get_activation  # noqa: F401
from .time_mlp import TimeMLP, sinusoidal_embedding  # noqa: F401
from .unet import UNet  # noqa: F401
from .sparse_matmul import sparse_rows_matmul, sparse_rows_matmul_t  # noqa: F401
