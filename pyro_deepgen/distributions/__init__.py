"""pyro_deepgen.distributions"""
