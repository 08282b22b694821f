r"""Score the sampler of any finished run folder with the offline sample metrics of
:mod:`pyro_deepgen.evaluate.samples`.

The run folder's ``report.json`` names the command that wrote it (``settings.command``); that
command's module rebuilds the trained sampler with its ``load_sampler(run_dir, device)``
(``vae``, ``rbm``, ``diffusion`` image runs, ``autoregressive``, ``gan``, ``gsn``). The data are
the run's own (``settings.data``, its ``data_root`` unless ``data_root`` is given here, its
seed, hence its train/test split): the classifier of the Fréchet distance and the coverage is
trained on the training split (and cached in the scored run folder as
``classifier-<key>.pt``), the samples are compared with the test split (``against="test"``) or
the training split (``against="train"``, a check for memorization). Runs trained on binarized
images (``rbm``, ``autoregressive``, or ``binarize="threshold"``) are compared with the
reference images thresholded at 1/2 likewise.

``report.json`` holds ``frechet_distance``, ``class_coverage`` (class -> share), ``mmd``,
``mmd_p_value``, ``c2st_accuracy``, ``c2st_p_value``, ``parzen_log_likelihood`` (biased, see
:mod:`~pyro_deepgen.evaluate.parzen`) with ``parzen_sigma``, ``num_samples`` and
``classifier_test_accuracy``; ``samples.png`` shows 64 of the scored samples.
``pyro-deepgen score-samples`` calls :func:`run`.
"""
import dataclasses
import importlib
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from ..data import load_train_test
from ..evaluate.samples import score_samples
from ..plotting import image_shape, save_image_grid
from .common import (
    record_in_run,
    read_run_report as read_run,
    RunConfig,
    check_choice,
    check_common,
    check_positive_int,
    prepare_output,
    settings,
    write_report,
    wrote_line,
)

COMMAND = "score-samples"
AGAINST = ("test", "train")
#: commands whose training images are thresholded at 1/2
BINARY_COMMANDS = ("rbm", "autoregressive")


def sampler_module(command: str):
    """The experiment module of ``command`` if it has ``load_sampler``, else a ValueError."""
    try:
        module = importlib.import_module(f"{__package__}.{command}")
    except ImportError:
        module = None
    if not hasattr(module, "load_sampler"):
        raise ValueError(f"run (--run): pyro-deepgen {command} runs have no sampler to score; score a vae, rbm, "
                         "diffusion, autoregressive, gan or gsn run")
    return module


@dataclasses.dataclass
class ScoreSamplesConfig(RunConfig):
    """The settings of :func:`run`, one per option of ``pyro-deepgen score-samples``.

    :param run: the finished run folder to score (required by :func:`run`; checked when set).
    :param against: ``test`` (the run's test split) or ``train``.
    :param data_root: the MNIST folder, instead of the one the run recorded.
    :param num_samples: samples drawn from the run's sampler.
    :param num_permutations: permutations of the MMD test.
    :param classifier_epochs: training epochs of the feature classifier.

    The shared fields (seed, device, out, progress, overwrite) come from
    :class:`~pyro_deepgen.experiments.common.RunConfig`; ``seed`` seeds the sampler and the tests.
    """

    run: Union[str, Path, None] = None
    against: str = "test"
    data_root: Optional[str] = None
    num_samples: int = 1000
    num_permutations: int = 500
    classifier_epochs: int = 5
    out: Union[str, Path] = Path("runs/score-samples")

    def __post_init__(self) -> None:
        check_choice(self, "against", AGAINST)
        check_positive_int(self, "num_samples", "num_permutations", "classifier_epochs")
        if self.num_samples < 4:
            raise ValueError(f"num_samples (--num-samples) must be at least 4, got {self.num_samples}")
        check_common(self)
        if self.run is not None:
            self.check_run()

    def check_run(self) -> None:
        """Check that ``run`` is a finished run folder whose command has a sampler."""
        if self.run is None:
            raise ValueError("run (--run) is required: the folder of a finished pyro-deepgen run")
        self.run = Path(self.run)
        if not self.run.is_dir():
            raise ValueError(f"run (--run) {self.run} is not a folder: pass the folder of a finished pyro-deepgen run")
        settings_ = read_run(self.run)["settings"]
        sampler_module(settings_["command"])
        if settings_.get("data") not in ("digits", "mnist"):
            raise ValueError(f"run (--run) {self.run} was trained on data={settings_.get('data')!r}; only digits "
                             "and mnist runs can be scored")


def _register_cache(run_dir: Path, before: set) -> None:
    """List new classifier caches in the scored run's marker, so its --overwrite removes them."""
    new = {p.name for p in run_dir.glob("classifier-*.pt")} - before
    if new:
        try:
            record_in_run(run_dir, *sorted(new))
        except OSError:
            pass


def run(config: ScoreSamplesConfig) -> Dict[str, Any]:
    """Draw samples from the run's sampler, score them, write ``report.json`` and
    ``samples.png`` to ``config.out``, print a summary and return the report."""
    config.check_run()
    folder = prepare_output(config.out, COMMAND, overwrite=config.overwrite)
    scored = read_run(config.run)
    s = scored["settings"]
    command = s["command"]
    data_root = config.data_root or s.get("data_root")
    data = load_train_test(s["data"], data_root, seed=s.get("seed", 0))
    binary = command in BINARY_COMMANDS or s.get("binarize") == "threshold"
    x_train, x_test = data.x_train, data.x_test
    if binary:
        x_train, x_test = (x_train > 0.5).float(), (x_test > 0.5).float()
    reference, labels = (x_test, data.y_test) if config.against == "test" else (x_train, data.y_train)
    t0 = time.time()
    torch.manual_seed(config.seed)
    sampler = sampler_module(command).load_sampler(config.run, device=config.device)
    with torch.no_grad():
        samples = sampler(config.num_samples).detach().reshape(config.num_samples, -1).float().cpu().clamp(0, 1)
    sample_seconds = time.time() - t0
    before = {p.name for p in config.run.glob("classifier-*.pt")}
    scores = score_samples(samples, reference, data.x_train, data.y_train, test_labels=labels,
                           cache_dir=config.run, classifier_epochs=config.classifier_epochs,
                           num_permutations=config.num_permutations, seed=config.seed, warn=False)
    _register_cache(config.run, before)
    report = {
        **scores,
        "run": str(config.run),
        "command_scored": command,
        "against": config.against,
        "reference_split": (data.test_split if config.against == "test"
                            else f"training split ({data.test_split} held out)"),
        "reference_binarized": binary,
        "sample_seconds": sample_seconds,
        "seconds": time.time() - t0,
        "settings": settings(config, COMMAND),
    }
    with folder.results() as out:
        write_report(out, report)
        save_image_grid(samples[:64], out / "samples.png", image_shape(samples.shape[1]),
                        title=f"{command} samples scored by score-samples",
                        caption=f"{min(64, len(samples))} of the {len(samples)} scored samples")
    print_summary(report)
    print(wrote_line(config.out, folder.files))
    return report


def print_summary(report: Dict[str, Any]) -> None:
    """The summary table, with the Parzen caveat."""
    shares = report["class_coverage"]
    rows = [
        ("run (command)", f"{report['run']} ({report['command_scored']})"),
        ("against", f"{report['against']}: {report['reference_split']}"),
        ("Fréchet distance (classifier features)", f"{report['frechet_distance']:.3f}"),
        ("class coverage min share / KL to uniform",
         f"{report['min_class_share']:.3f} / {report['coverage_kl_to_uniform']:.3f} nats"),
        ("class shares", " ".join(f"{k}:{v:.2f}" for k, v in shares.items())),
        ("MMD^2 (p-value)", f"{report['mmd']:.4g} ({report['mmd_p_value']:.3g})"),
        ("C2ST accuracy (p-value)", f"{report.get('c2st_accuracy', float('nan')):.3f} "
                                    f"({report.get('c2st_p_value', float('nan')):.3g})"),
        ("Parzen log-likelihood (sigma)", f"{report['parzen_log_likelihood']:.2f} +- {report['parzen_stderr']:.2f} "
                                          f"({report['parzen_sigma']:.3f})"),
        ("classifier test accuracy", f"{report['classifier_test_accuracy']:.3f}"),
        ("samples / seconds", f"{report['num_samples']} / {report['seconds']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    print("note: the Parzen-window log-likelihood is biased and easy to fool (Theis et al. 2016); "
          "compare it only at equal sample sizes")
