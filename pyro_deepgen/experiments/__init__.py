"""Experiments: one module per ``pyro-deepgen`` command, callable from a notebook, a benchmark or
a test.

==============================================  ==============================================
module (command ``pyro-deepgen <name>``)        config
==============================================  ==============================================
:mod:`pyro_deepgen.experiments.vae`             :class:`~.vae.VAEConfig`
:mod:`pyro_deepgen.experiments.rbm`             :class:`~.rbm.RBMConfig`
:mod:`pyro_deepgen.experiments.diffusion`       :class:`~.diffusion.DiffusionConfig`
:mod:`pyro_deepgen.experiments.flows2d`         :class:`~.flows2d.Flows2DConfig`
:mod:`pyro_deepgen.experiments.autoregressive`  :class:`~.autoregressive.AutoregressiveConfig`
:mod:`pyro_deepgen.experiments.ssvae`           :class:`~.ssvae.SSVAEConfig`
:mod:`pyro_deepgen.experiments.gan`             :class:`~.gan.GANConfig`
:mod:`pyro_deepgen.experiments.gsn`             :class:`~.gsn.GSNConfig`
:mod:`pyro_deepgen.experiments.score_samples`   :class:`~.score_samples.ScoreSamplesConfig`
:mod:`pyro_deepgen.experiments.autoencoder`     :class:`~.autoencoder.AutoencoderConfig`
==============================================  ==============================================

**The convention.** Each module has

- a config dataclass whose fields are the command's options (``--batch-size`` is
  ``batch_size``), with the same defaults. ``__post_init__`` checks the values as the command
  line does and raises a one-line :class:`ValueError` that names the field and its option
  (``ais_runs (--ais-runs) must be ...``), so a library caller gets the command's errors;
- ``run(config) -> dict``: the whole experiment (training, evaluation, the files written to
  ``config.out``, and the printed summary). It first claims ``config.out`` with
  :func:`~pyro_deepgen.experiments.common.prepare_output` (a new or empty folder, or one the
  package wrote, with ``resume`` or ``overwrite``; a user's folder is refused), checkpoints
  training there, and moves the final files in only once the run is complete. It returns the
  report, a ``dict`` of plain JSON data (numbers, strings, lists, dicts, ``None``): exactly
  what it writes to ``report.json``. Its ``settings`` entry is the config
  (see :func:`~pyro_deepgen.experiments.common.settings`).

The command (``pyro_deepgen/cli/<name>.py``) only parses the arguments, builds the config and
calls ``run``. A new experiment is a new module here plus a command file there. Example::

    from pyro_deepgen.experiments.vae import VAEConfig, run

    report = run(VAEConfig(epochs=2, z_dim=2, out="runs/notebook", progress=False))
    report["test_log_likelihood"]

Shared helpers (the atomic output folder, ``report.json``, the checks of the settings) are in
:mod:`pyro_deepgen.experiments.common`. The submodules are imported on demand.
"""
from .common import atomic_output_dir, write_json  # noqa: F401

__all__ = ["atomic_output_dir", "write_json"]
