"""Ready-made generative models written as Pyro programs."""
from .vae import VAE  # noqa: F401
from .diffusion import GaussianDiffusion  # noqa: F401
from .vdm import VariationalDiffusion  # noqa: F401
from .helmholtz import HelmholtzMachine  # noqa: F401
from .ssvae import SSVAE, StackedSSVAE  # noqa: F401
from .gan import Discriminator, Generator  # noqa: F401
from .gsn import GSN  # noqa: F401
from .autoencoder import Autoencoder  # noqa: F401
from .autoencoder_penalties import L1, Contractive, Denoising  # noqa: F401
from .kmeans import KMeansAutoencoder  # noqa: F401
from .dictionary_learning import DictionaryLearning  # noqa: F401
from .psd import PSD  # noqa: F401
from .lista import LISTA  # noqa: F401
from .._compat import moved_attributes

__getattr__ = moved_attributes(__name__, {
    "RBM": "pyro_deepgen.energy", "DBN": "pyro_deepgen.energy", "DBM": "pyro_deepgen.energy",
    "MeanFieldPCD": "pyro_deepgen.energy",
})
