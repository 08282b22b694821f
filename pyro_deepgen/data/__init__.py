"""pyro_deepgen.data"""
