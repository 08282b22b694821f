"""The ELBO conformance suite: model shapes x estimators, and the docs matrix built from it."""
