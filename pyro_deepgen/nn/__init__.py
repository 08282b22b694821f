"""Neural-network building blocks shared by the models, guides and flows."""
from .mlp import MLP, get_activation  # noqa: F401
from .time_mlp import TimeMLP, sinusoidal_embedding  # noqa: F401
from .unet import UNet  # noqa: F401
from .._compat import moved_attributes

__getattr__ = moved_attributes(__name__, {
    "sparse_rows_matmul": "pyro_deepgen.energy._kernels.sparse_matmul",
    "sparse_rows_matmul_t": "pyro_deepgen.energy._kernels.sparse_matmul",
})
