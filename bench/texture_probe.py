"""How well the texture recipe's frozen features separate the classes: a linear probe per variant.

docs/RECIPE.md's tenth-session probe rows come from this script (the earlier rows from /tmp
scripts of the same design): the product's own preprocessing and texture network give each
image's features, then the pooled out-of-fold AUC
of the recipe's L2 logistic read-out (class-balanced, standardised on each training part) is
taken over patient-grouped StratifiedGroupKFold splits, one per fold seed, at each strength C.
The variants and C are chosen on these same folds, so the numbers are optimistic: the product's
``ctviewer cv`` is the number to trust.

    python bench/texture_probe.py ../shared/data/covid-ct-dev/labels.csv --positive covid \\
        --fold-seeds 0 1 2 3 --variants recipe half_nets_only full_nets_only
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import bench_common as bc
import numpy as np

# Variants as changes to the recipe's TextureArchitecture (its field defaults are the recipe).
VARIANTS: dict[str, dict] = {
    "recipe": {},
    "eighth_session": {"nets": 5, "half_scale_nets": 3},  # the recipe before the ninth session
    "full_nets_only": {"half_scale_nets": 0},
    "half_nets_only": {"nets": 0},
    "means_only": {"statistics": ("mean",)},
    "no_log": {"log_offset": None},
    "no_mirror": {"mirror": False},
}


def _features(data: str, positive: str | None, variant: str, net_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ctviewer.core.data.cache import Cache
    from ctviewer.core.data.dataset import discover, load_stack
    from ctviewer.core.model.config import default_config, preprocessing_of
    from ctviewer.core.model.texture import TextureArchitecture, build_texture, extract_features

    cache = Cache()
    dataset = discover(data, positive=positive, cache=cache)
    config = default_config("texture")
    stack = load_stack(dataset, preprocessing_of(config), cache)
    arch = replace(TextureArchitecture(), **VARIANTS[variant])
    model = build_texture(config.input_size, seed=net_seed, arch=arch)
    return extract_features(model, stack, config.batch_size), dataset.y, dataset.patients


def main() -> None:
    from ctviewer.core.model.texture import READOUT_STRENGTHS, inner_cv_auc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a labelled folder or labels.csv (with a patient column for grouping)")
    parser.add_argument("--positive", default=None)
    parser.add_argument("--variants", nargs="+", default=["recipe"], choices=sorted(VARIANTS))
    parser.add_argument("--fold-seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--net-seed", type=int, default=0, help="the networks' draw (TrainConfig.seed)")
    parser.add_argument("--strengths", nargs="+", type=float, default=list(READOUT_STRENGTHS))
    args = parser.parse_args()
    print(bc.machine_header())
    strengths = tuple(args.strengths)
    table = []
    for variant in args.variants:
        started = time.perf_counter()
        features, y, groups = bc.run_isolated(_features, args.data, args.positive, variant, args.net_seed)
        seconds = time.perf_counter() - started
        # The read-out's own inner cross-validation, one fold seed at a time (class-balanced, as the recipe).
        per_seed = [inner_cv_auc(features, y, groups, strengths, balanced=True, seed=s)[0] for s in args.fold_seeds]
        best = [max(aucs.values()) for aucs in per_seed]
        mean_by_c = {c: float(np.mean([aucs[c] for aucs in per_seed])) for c in strengths}
        table.append([variant, str(features.shape[1]), " / ".join(f"{b:.3f}" for b in best), f"{np.mean(best):.3f}",
                      "  ".join(f"{c:g}: {a:.3f}" for c, a in mean_by_c.items()), f"{seconds:.0f}"])
        print(table[-1], flush=True)
    bc.print_table(
        f"Texture features + logistic read-out, pooled out-of-fold AUC (fold seeds {args.fold_seeds}, "
        f"network draw {args.net_seed})",
        ["variant", "features", "best C per fold seed", "mean", "mean AUC per C", "extract s"], table,
        notes=["StratifiedGroupKFold(5) by patient per fold seed; variants and C chosen on these same folds: optimistic",
               "extract s = preprocessing (from ctviewer's cache when warm) + feature extraction, one fresh process"],
    )


if __name__ == "__main__":
    main()
