"""pyro_deepgen.guides"""
