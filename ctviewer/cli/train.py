"""``ctviewer train DATA --out BUNDLE``: train a model (or a k-fold ensemble) and save it as a bundle."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctviewer.cli._data import add_cache_argument
from ctviewer.cli._progress import InterruptToStop, ProgressBars, add_progress_flag, quiet_tensorflow_logs
from ctviewer.core.errors import Cancelled, CTViewerError

if TYPE_CHECKING:
    from ctviewer.core.training.results import CVResult


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="dataset: a folder of class subfolders, or a labels.csv")
    parser.add_argument("--positive", metavar="CLASS", help="name of the positive class (default: guessed, e.g. "
                        "the class whose partner is called no_*/normal)")
    add_cache_argument(parser)


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that override the chosen model's recipe defaults (see `ctviewer.core.model.recipes`)."""
    parser.add_argument("--model", default="default", metavar="NAME",
                        help="default (HU histograms in CNN masks, or the texture recipe when inner cross-validation "
                             "finds the signal is a pattern), texture, seed (the original question's network), "
                             "efficientnetb0, resnet50, densenet121")
    parser.add_argument("--no-recipe-choice", dest="choose_recipe", action="store_false",
                        help="with --model default: train the HU-histogram recipe without comparing it with the "
                             "texture recipe first")
    parser.add_argument("--epochs", type=int, metavar="N", help="maximum epochs (early stopping may end sooner)")
    parser.add_argument("--size", type=int, metavar="S", help="input size in pixels (square)")
    parser.add_argument("--seed", type=int, metavar="K", help="random seed for split, initialisation, augmentation")
    parser.add_argument("--batch-size", type=int, metavar="B", help="images per training batch")
    parser.add_argument("--window", metavar="W", help="input window: a preset (wide, soft_tissue...) or CENTER,WIDTH")
    parser.add_argument("--validation", type=float, metavar="F",
                        help="fraction of each model's training patients held out for early stopping (default "
                             "0.2); 0: no hold-out, train the fixed schedule of --epochs and keep the last epoch")
    parser.add_argument("--threshold-rule", choices=("youden", "sensitivity", "specificity"),
                        help="how to choose the decision threshold on validation data (default youden)")
    parser.add_argument("--target", type=float, metavar="T",
                        help="target sensitivity/specificity for --threshold-rule sensitivity/specificity")
    parser.add_argument("--target-sensitivity", type=float, metavar="S",
                        help="choose the threshold that reaches sensitivity S (same as --threshold-rule "
                             "sensitivity --target S)")
    parser.add_argument("--threshold", type=float, metavar="T",
                        help="use the fixed decision threshold T instead of choosing one")
    parser.add_argument("--weights", metavar="PATH", help="ImageNet weights file for transfer-learning models")
    parser.add_argument("--allow-download", action="store_true",
                        help="let a transfer-learning model download its ImageNet weights (default: never use the "
                             "network; say which file to put where)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="test-time augmentation (image + mirror averaged) for this model's predictions, "
                             "stored in the bundle (default: as the recipe says)")
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"),
                        help="the default model's conv blocks: float32 (default); auto computes them in bfloat16 on "
                             "a CPU with native bfloat16 (avx512_bf16/AMX) and no GPU, float32 elsewhere (about 1.4x "
                             "less CPU per step); recorded in the model card ($CTVIEWER_CONV_PRECISION, when set, "
                             "overrides it)")


def config_from_args(args: argparse.Namespace) -> Any:
    """The model's recipe defaults with the command-line overrides applied."""
    from ctviewer.core.model.recipes import default_config

    config = default_config(args.model)
    chosen = [name for name, value in (("--threshold-rule", args.threshold_rule), ("--threshold", args.threshold),
                                       ("--target-sensitivity", args.target_sensitivity)) if value is not None]
    if len(chosen) > 1:
        raise CTViewerError(f"{' and '.join(chosen)} both set the threshold; give one of them")
    for name, value in (("--threshold", args.threshold), ("--target-sensitivity", args.target_sensitivity)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise CTViewerError(f"{name} must be between 0 and 1 (got {value})")
    if args.threshold is not None:
        args.threshold_rule, args.target = "fixed", args.threshold
    elif args.target_sensitivity is not None:
        args.threshold_rule, args.target = "sensitivity", args.target_sensitivity
    if args.threshold_rule in ("sensitivity", "specificity") and args.target is None:
        raise CTViewerError(f"--threshold-rule {args.threshold_rule} needs --target (e.g. --target 0.9)")
    for name, value in (("epochs", args.epochs), ("size", args.size), ("batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise CTViewerError(f"--{name} must be a positive number (got {value})")
    if args.validation is not None and not 0.0 <= args.validation < 1.0:
        raise CTViewerError(f"--validation must be at least 0 and below 1 (got {args.validation})")
    return config.with_overrides(
        choose_recipe=None if getattr(args, "choose_recipe", True) else False,
        epochs=args.epochs, input_size=args.size, seed=args.seed, batch_size=args.batch_size, window=args.window,
        validation_fraction=args.validation, threshold_rule=args.threshold_rule, threshold_target=args.target,
        weights=args.weights, tta=args.tta, precision=args.precision,
    )


def check_weights_available(config: Any) -> None:
    """A transfer model's weights file must be at hand before any data is read (no network unless allowed)."""
    from ctviewer.core.model.recipes import BACKBONES, resolve_weights

    name = str(config.model).strip().lower()
    if name in BACKBONES:
        resolve_weights(name, config.weights)


def load_dataset(args: argparse.Namespace, bars: ProgressBars) -> tuple[Any, Any]:
    """Discover DATA with a progress bar; return (dataset, cache). Skipped files are reported on stderr."""
    from ctviewer.cli._data import cache_from_args, scan_images

    cache = cache_from_args(args)
    dataset = scan_images(args.data, cache, bars, positive=args.positive)
    for note in dataset.report.notes:
        bars.write(f"note: {note}")
    dataset.require_binary()
    return dataset, cache


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a cross-validated ensemble and save it as a model bundle",
        description="Train a binary classifier on DATA and save it in BUNDLE. By default: patient-grouped, "
                    "stratified 5-fold cross-validation whose 5 fold models are kept as one ensemble (their mean "
                    "probability); the threshold is chosen on the out-of-fold predictions of every image, and "
                    "the model card holds the expected performance on new images from the same source. "
                    "--folds 1: a single model with a patient-grouped validation hold-out.",
    )
    add_data_arguments(parser)
    parser.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the model files of an existing bundle at BUNDLE (other files there are kept)")
    add_recipe_arguments(parser)
    parser.add_argument("--folds", type=int, metavar="K",
                        help="number of fold models in the ensemble (default 5, fewer when a class has fewer "
                             "patients); 1: one model with a validation hold-out")
    add_progress_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctviewer.cli._outputs import check_output_folder
    from ctviewer.core.model.bundle import check_bundle_target, save_bundle
    from ctviewer.core.training.run import run_training

    if args.folds is not None and args.folds < 1:
        raise CTViewerError(f"--folds must be at least 1 (got {args.folds})")
    quiet_tensorflow_logs()
    config = config_from_args(args)
    out = Path(args.out)
    # Before hours of training: the bundle must be writable where asked, and the weights at hand.
    check_output_folder(out, "--out")
    check_bundle_target(out, overwrite=args.overwrite)
    check_weights_available(config)
    with ProgressBars(disable=args.quiet, epochs=config.epochs) as bars, InterruptToStop(bars) as stop:
        dataset, cache = load_dataset(args, bars)
        run = run_training(dataset, config, args.folds, on_event=bars, should_stop=stop, cache=cache)
        if run.cv is not None:
            bars.close()
    if run.cv is not None:
        return _save_ensemble(run.cv, out, overwrite=args.overwrite)
    trained = run.trained
    assert trained is not None  # --folds 1 trains one model
    if trained.cancelled and trained.best_epoch is None:
        raise Cancelled("training stopped before the first epoch ended; nothing saved")
    save_bundle(trained, out, overwrite=args.overwrite)
    print(format_training_summary(trained, out))
    return 0


def _save_ensemble(result: CVResult, out: Path, overwrite: bool = False) -> int:
    from ctviewer.cli.cv import format_cv_summary
    from ctviewer.core.model.bundle import save_bundle

    assert result.ensemble is not None  # run_training keeps the fold models
    save_bundle(result.ensemble, out, overwrite=overwrite)
    title = f"trained {result.config.model} as a {result.folds.k}-fold ensemble"
    print(format_cv_summary(result, title=title))
    members = len(result.ensemble.members)
    print(f"  bundle:     {out}: ensemble of {members} fold model(s) (model id {result.ensemble.model_id}), "
          f"out-of-fold predictions in {out / 'oof_predictions.csv'}")
    return 0


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def metrics_line(metrics: Any, predictive_values: bool = False) -> str:
    """AUC, accuracy, sensitivity, specificity (and PPV, NPV) with their intervals on one line."""
    parts = []
    names = [("auc", "AUC"), ("accuracy", "accuracy"), ("sensitivity", "sensitivity"), ("specificity", "specificity")]
    if predictive_values:
        names += [("ppv", "PPV"), ("npv", "NPV")]
    for name, label in names:
        value, ci = getattr(metrics, name), getattr(metrics, f"{name}_ci")
        interval = "" if ci.is_nan else f" [{ci.low:.2f}-{ci.high:.2f}]"
        by_patient = getattr(metrics, "patient_ci", {}).get(name)
        if by_patient is not None and not by_patient.is_nan and metrics.n_patients < metrics.n:
            interval += f" (patient bootstrap {by_patient.low:.2f}-{by_patient.high:.2f})"
        parts.append(f"{label} {_fmt(value)}{interval}")
    return ", ".join(parts)


def format_training_summary(trained: Any, out: Path) -> str:
    counts = trained.split.counts()
    ds = trained.dataset
    lines = [
        (f"trained {trained.config.model} on {ds.source}: {ds.n_images} images, {ds.n_patients} patients, "
         f"positive class {trained.positive}"),
        (f"  split:      {counts['train']} train / {counts['validation']} validation images "
         f"({trained.split.method}, seed {trained.split.seed})"),
    ]
    best = "none completed" if trained.best_epoch is None else str(trained.best_epoch + 1)
    status = " (cancelled)" if trained.cancelled else ""
    lines.append(f"  epochs:     {trained.epochs_run} run, best {best} by {trained.config.monitor}{status}")
    lines.append(f"  threshold:  {trained.threshold:.4f} ({trained.config.threshold_rule}, chosen on validation)")
    if trained.validation_metrics is not None:
        lines.append(f"  validation: {metrics_line(trained.validation_metrics)} "
                     f"(n={trained.validation_metrics.n}; small: see the intervals)")
    for note in trained.notes:
        lines.append(f"  note:       {note}")
    lines.append(f"  bundle:     {out} (model id {trained.model_id}), {trained.seconds:.0f} s")
    return "\n".join(lines)
