"""pyro_deepgen.guides"""
from .amortized_flow import AmortizedFlowGuide  # noqa: F401
from .amortized_flow import flow_vae  # noqa: F401
from .auto_flow import AutoFlow  # noqa: F401
from .autoencoder_guide import AutoencoderGuide  # noqa: F401
