"""The ``lightly-temperature`` command: ``study``, ``explain`` and ``ssl-train``.

Examples:
    $ lightly-temperature study                      # embedded digits, ~10 minutes on a CPU
    $ lightly-temperature ssl-train input_dir=images/ pre_trained=False criterion.loss=hcl
    $ lightly-temperature study --dataset cifar10 --data-dir ~/data --preset paper --accelerator gpu
    $ lightly-temperature explain --similarities 0.5 0.25 -0.45 -0.1 --temperatures 1 0.5 0.05 0.01

Bad input (a missing path, an empty folder, an unreadable image, an unknown loss or data set,
tau <= 0, lr <= 0, a batch of one, a precision the study does not run, an accelerator or
device count Lightning refuses, an output folder that cannot be written or was made with other
settings) exits with status 2 and one line on stderr, no traceback, before any training.
Ctrl-C exits with status 130 and one line saying which runs finished (rerunning resumes).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from lightly_temperature._validation import check_writable_folder
from lightly_temperature.explain import (
    SEED_SIMILARITIES,
    SEED_TEMPERATURES,
    explain,
    format_explanation,
    plot_explanation,
)
from lightly_temperature.models._base import OPTIMIZERS
from lightly_temperature.study.config import (
    METHODS,
    PRESETS,
    STUDY_PRECISIONS,
    TEMPERATURE_POLICIES,
    StudyConfig,
    default_hard_negatives,
    paper_preset,
    parse_hard_negatives,
)
from lightly_temperature.study.models import BACKBONES

PROG = "lightly-temperature"
#: The study's defaults, shown in --help.
_STUDY_DEFAULTS = StudyConfig()


class CLIError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage block) so every bad input reads the same."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _devices(text: str):
    return int(text) if text.isdigit() else text


def _words(values: Sequence[object]) -> str:
    return " ".join(f"{value:g}" if isinstance(value, float) else str(value) for value in values)


def _add_temperatures(parser: argparse.ArgumentParser, defaults: Sequence[float]) -> None:
    # Parsed as numbers here; StudyConfig and explain() check them (> 0, finite).
    parser.add_argument(
        "--temperatures",
        nargs="+",
        type=float,
        default=None,
        metavar="TAU",
        help=f"temperatures (default: {_words(defaults)})",
    )


def build_parser() -> argparse.ArgumentParser:
    from lightly_temperature import __version__

    defaults = _STUDY_DEFAULTS
    parser = _Parser(
        prog=PROG,
        description="Temperature and hardness of contrastive losses (Wang & Liu, CVPR 2021).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="{study,explain,ssl-train}", parser_class=_Parser
    )
    sub.required = True

    study = sub.add_parser(
        "study",
        help="train SimCLR/MoCo for each loss x temperature and evaluate them",
        description="Train SimCLR (or MoCo) for each loss x temperature, evaluate each run "
        "(kNN and linear accuracy, uniformity, tolerance, alignment, positive vs top-10 "
        "negative similarities) and write report.md, results.csv and plots. Without data "
        "arguments it uses scikit-learn's embedded digits. Rerunning resumes.",
    )
    study.add_argument("--output", default=None, help=f"output folder (default: {defaults.output})")
    study.add_argument(
        "--method", choices=METHODS, default=None, help=f"(default: {defaults.method})"
    )
    study.add_argument(
        "--losses",
        nargs="+",
        default=None,
        metavar="LOSS",
        help=f"loss names of the registry (default: {_words(defaults.losses)})",
    )
    _add_temperatures(study, defaults.temperatures)
    _add_hard_negatives(
        study,
        "K hardest negatives of the hard losses: an int, a fraction alpha of the negatives, or "
        f"none for all (default: {default_hard_negatives('simclr')} for simclr, "
        f"{default_hard_negatives('moco')} of the memory bank for moco)",
    )
    policies = study.add_argument_group(
        "temperature policies (a grid axis; the grid's τ is where each policy starts)"
    )
    policies.add_argument(
        "--temperature-policy",
        nargs="+",
        choices=TEMPERATURE_POLICIES,
        default=None,
        metavar="POLICY",
        help=f"one or more of {_words(TEMPERATURE_POLICIES)}: constant τ, cosine schedule "
        "(τ_max = τ), learnable τ, MACL's adaptive τ (base τ), one τ per sample (iSogCLR) "
        f"(default: {_words(defaults.temperature_policies)})",
    )
    policies.add_argument(
        "--policy-tau-min",
        type=float,
        default=None,
        help="cosine τ_min; lower bound of the learnable and per-sample τ "
        f"(default: {defaults.policy_tau_min:g})",
    )
    policies.add_argument(
        "--policy-tau-max",
        type=float,
        default=None,
        help="upper bound of the learnable and per-sample τ "
        f"(default: {defaults.policy_tau_max:g})",
    )
    policies.add_argument(
        "--cosine-period",
        type=int,
        default=None,
        help="period of the cosine schedule in epochs (default: the run's epochs)",
    )
    policies.add_argument(
        "--adaptive-alpha",
        type=float,
        default=None,
        help=f"MACL's alpha, in [0, 1) (default: {defaults.adaptive_alpha:g})",
    )
    policies.add_argument(
        "--individual-lr",
        type=float,
        default=None,
        help=f"step of the per-sample τ update (default: {defaults.individual_lr:g})",
    )
    policies.add_argument(
        "--individual-rho",
        type=float,
        default=None,
        help=f"iSogCLR's rho (default: {defaults.individual_rho:g})",
    )
    study.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        metavar="SEED",
        help=f"one run per seed, ints >= 0 (default: {_words(defaults.seeds)})",
    )
    study.add_argument(
        "--epochs", type=int, default=None, help=f"per run (default: {defaults.epochs})"
    )
    study.add_argument(
        "--fewshot",
        nargs="+",
        type=int,
        default=None,
        metavar="K",
        help="labelled train images per class of the few-shot accuracies (1-NN on the "
        f"projections, {defaults.few_shot_draws} label draws), distinct ints >= 1 (default: "
        f"{_words(defaults.few_shot)})",
    )
    study.add_argument(
        "--batch-size", type=int, default=None, help=f"(default: {defaults.batch_size})"
    )
    study.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=None,
        help="adamw, or sgd (the SimCLR/MoCo modules' own, momentum 0.9) "
        f"(default: {defaults.optimizer})",
    )
    study.add_argument(
        "--lr", type=float, default=None, help=f"learning rate (default: {defaults.lr:g})"
    )
    study.add_argument(
        "--weight-decay", type=float, default=None, help=f"(default: {defaults.weight_decay:g})"
    )
    data = study.add_argument_group("data (default: scikit-learn's embedded digits)")
    data.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="image folder, one subfolder per class (default: none)",
    )
    data.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help="cifar10, cifar100 or svhn, with --data-dir (default: digits)",
    )
    data.add_argument(
        "--data-dir",
        default=None,
        metavar="PATH",
        help="folder holding torchvision's files (default: none)",
    )
    data.add_argument(
        "--image-size",
        type=int,
        default=None,
        help=f"for --data (default: {defaults.image_size})",
    )
    data.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help=f"data loader workers (default: {defaults.num_workers})",
    )
    study.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="paper: NPID (memory bank indexed by sample), K = 0.0819 x samples (4095 on "
        "CIFAR), batch 128, SGD lr 0.03 (x0.1 at epochs 160, 190), 200 epochs, 128-d, "
        "ResNet-18 (3x3 conv) on image data; explicit options override it (default: digits)",
    )
    study.add_argument(
        "--backbone", choices=BACKBONES, default=None, help=f"(default: {defaults.backbone})"
    )
    lightning = study.add_argument_group("Lightning (passed to pytorch_lightning.Trainer)")
    lightning.add_argument(
        "--accelerator",
        default=None,
        help=f"cpu, gpu, auto, ... (default: {defaults.accelerator})",
    )
    lightning.add_argument(
        "--devices",
        type=_devices,
        default=None,
        help=f"e.g. 1, 2 or auto (default: {defaults.devices})",
    )
    lightning.add_argument(
        "--precision",
        default=None,
        help=f"{', '.join(str(p) for p in STUDY_PRECISIONS[1:])} (default: Lightning's, 32)",
    )
    study.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: 1 for the small CNN, torch's default otherwise)",
    )
    study.add_argument(
        "--no-progress-bar",
        action="store_true",
        help="hide Lightning's per-epoch progress bar (default: shown when stderr is a "
        "terminal; the study prints one line per run either way)",
    )

    explain = sub.add_parser(
        "explain",
        help="tables of what tau does to one anchor's loss, gradients and penalties",
        description="Scaled similarities, softmax probabilities and cross-entropy loss per "
        "temperature, and each negative's gradient and relative penalty for the plain and the "
        "hard contrastive loss. Without --similarities: the two anchors of the article "
        "'Intuitive Guide for Temperature Coefficients in Contrastive Learning'.",
    )
    explain.add_argument(
        "--similarities",
        nargs="+",
        type=float,
        default=None,
        metavar="S",
        help="the positive's cosine similarity, then the negatives' (default: the article's "
        f"anchors {'; '.join(_words(s) for s in SEED_SIMILARITIES)})",
    )
    _add_temperatures(explain, SEED_TEMPERATURES)
    _add_hard_negatives(
        explain,
        "K most similar negatives kept by the hard loss: an int, a fraction alpha of the "
        "negatives, or none for all (default: half, rounded up)",
    )
    explain.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="also draw the tables, e.g. explain.png (default: no plot)",
    )
    ssl_train = sub.add_parser(
        "ssl-train",
        help="Lightly's lightly-ssl-train with a loss of this package (criterion.loss=...)",
        description="Runs Lightly's training command (lightly-ssl-train) with its Hydra "
        "configuration and overrides, and the loss named by criterion.loss (default ntxent, "
        "Lightly's NTXentLoss); the other criterion.* keys are that loss's arguments, e.g. "
        "criterion.temperature=0.3 criterion.hard_negatives=0.0819. temperature_analysis=true "
        "attaches the TemperatureAnalysis and HardnessMonitor callbacks (probe: the images of "
        "input_dir). Outputs are Lightly's. Lightly's default pre_trained=True downloads "
        "weights: pass pre_trained=False to train from scratch offline. "
        "See lightly-ssl-train --help for Lightly's keys.",
    )
    ssl_train.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="Lightly's overrides (input_dir=..., trainer.max_epochs=..., loader.batch_size=...), "
        "criterion.loss=NAME and its criterion.* arguments, temperature_analysis=true|false",
    )
    return parser


def _run_ssl_train(args: argparse.Namespace) -> int:
    from lightly_temperature.ssl_train import prepare, run

    try:
        prepared = prepare(args.overrides)  # every check, before Lightly's command starts
    except ValueError as error:
        raise CLIError(str(error)) from None
    run(prepared, prog=f"{PROG} ssl-train")
    return 0


def _add_hard_negatives(parser: argparse.ArgumentParser, help: str) -> None:
    # Parsed by parse_hard_negatives, so that a bad value reads the same in both commands.
    parser.add_argument("--hard-negatives", default=None, metavar="K", help=help)


def _study_config(args: argparse.Namespace) -> StudyConfig:
    """The study's settings: defaults, the preset, then the options given (checked by
    StudyConfig; a bad value raises ValueError naming it)."""
    config = StudyConfig()
    if args.preset == "paper":
        config = paper_preset(config, digits=args.data is None and args.dataset is None)
    overrides = {
        "output": args.output,
        "method": args.method,
        "losses": tuple(args.losses) if args.losses else None,
        "temperatures": tuple(args.temperatures) if args.temperatures else None,
        "seeds": tuple(args.seeds) if args.seeds else None,
        "few_shot": tuple(args.fewshot) if args.fewshot else None,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "optimizer": args.optimizer,
        "weight_decay": args.weight_decay,
        "data": args.data,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "image_size": args.image_size,
        "num_workers": args.num_workers,
        "backbone": args.backbone,
        "accelerator": args.accelerator,
        "devices": args.devices,
        "precision": args.precision,
        "temperature_policies": (
            tuple(args.temperature_policy) if args.temperature_policy else None
        ),
        "policy_tau_min": args.policy_tau_min,
        "policy_tau_max": args.policy_tau_max,
        "cosine_period": args.cosine_period,
        "adaptive_alpha": args.adaptive_alpha,
        "individual_lr": args.individual_lr,
        "individual_rho": args.individual_rho,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if args.hard_negatives is not None:
        config = replace(config, hard_negatives=parse_hard_negatives(args.hard_negatives))
    elif args.preset != "paper":  # the preset sets its own K
        config = replace(config, hard_negatives=default_hard_negatives(config.method))
    # Lightning's bar redraws in place on stderr: into a file or a pipe it is megabytes of
    # carriage returns, so it is shown on a terminal only (one line per run either way).
    if args.no_progress_bar or not sys.stderr.isatty():
        config = replace(config, progress_bar=False)
    if args.threads is not None:
        config = replace(config, threads=args.threads)
    return config


def _run_study(args: argparse.Namespace) -> int:

    from lightly_temperature.study.data import check_few_shot_data, load_study_data
    from lightly_temperature.study.results import ResultsFile
    from lightly_temperature.study.runner import check_losses, check_trainer_settings, run_study
    from lightly_temperature.study.settings import (
        check_output_folder,
        check_output_settings,
        study_settings,
    )

    # Everything the user can get wrong is checked here, before any training; errors after
    # this point are bugs and keep their traceback.
    try:
        config = _study_config(args)
        check_losses(config.losses, config.method)
        check_trainer_settings(config)
        data = load_study_data(
            config.data, config.dataset, config.data_dir, config.image_size, config.max_eval_samples
        )
        # run_study repeats these checks; here their errors become one line.
        check_output_settings(config.output, study_settings(config, data), write=False)
        check_few_shot_data(data, config.few_shot)
        ResultsFile(Path(config.output) / "results.csv", config.few_shot).check_columns()
        check_output_folder(config.output)  # last: it creates the folder
    except (ValueError, FileNotFoundError) as error:
        raise CLIError(str(error)) from None
    # Lines go out as they are printed, also into a pipe or a file.
    run_study(config, data=data, printer=functools.partial(print, flush=True))
    return 0


def _plot_path(text: str) -> Path:
    """The file ``--plot`` names (``.png`` added when it has no suffix), checked before
    anything is computed: not a folder, a format matplotlib writes, a folder it can write to."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(text)
    if path.is_dir():
        raise CLIError(f"--plot {text}: a folder; give a file name such as {path / 'explain.png'}")
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise CLIError(
            f"--plot {text}: unknown image format {path.suffix!r}, use one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    try:
        check_writable_folder(path.parent, "--plot", shown=text)
    except ValueError as error:
        raise CLIError(str(error)) from None
    return path


def _run_explain(args: argparse.Namespace) -> int:
    anchors = [args.similarities] if args.similarities else list(SEED_SIMILARITIES)
    temperatures = args.temperatures or list(SEED_TEMPERATURES)
    try:
        hard_negatives = parse_hard_negatives(args.hard_negatives)
        if args.hard_negatives is not None and hard_negatives is None:  # "none": all of them
            hard_negatives = 1.0
        results = [explain(s, temperatures, hard_negatives) for s in anchors]
    except ValueError as error:
        raise CLIError(str(error)) from None
    plot = _plot_path(args.plot) if args.plot else None
    print("\n\n".join(format_explanation(r) for r in results))
    if plot is not None:
        try:
            plot_explanation(results, plot)
        except OSError as error:
            raise CLIError(f"--plot {args.plot}: {error.strerror or error}") from None
        print(f"\nplot: {plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lightly-temperature`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "study":
            return _run_study(args)
        if args.command == "ssl-train":
            return _run_ssl_train(args)
        return _run_explain(args)
    except CLIError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        message = str(interrupt) or "interrupted"
        print(f"{PROG} {args.command}: {message}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader closed the pipe (``explain | head``): stop quietly, as a shell tool does;
        # stdout goes to /dev/null so that Python's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
