"""pyro_deepgen.data"""
from .binarization import binarize  # noqa: F401
from .binarization import binarize_split  # noqa: F401
from .binarization import dynamic_binarize  # noqa: F401
from .digits import load_digits  # noqa: F401
from .download import DownloadError  # noqa: F401
from .files import CorruptDataError  # noqa: F401
from .frey import load_frey_faces  # noqa: F401
from .idx import read_idx  # noqa: F401
from .mnist import load_mnist  # noqa: F401
from .split import holdout_indices  # noqa: F401
from .train_test import TrainTestData  # noqa: F401
from .train_test import load_train_test  # noqa: F401
