"""``python -m pyro_deepgen.cli`` (and ``torchrun --nproc_per_node N -m pyro_deepgen.cli``)."""
import sys

from . import main

sys.exit(main())
